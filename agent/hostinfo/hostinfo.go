// Package hostinfo describes the machine an agent runs on.
package hostinfo

import (
	"bufio"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Info is what the agent reports about its host.
type Info struct {
	Hostname string
	OS       string
	Arch     string
	Kernel   string
}

// Read gathers the host's description; fields it cannot read are left
// as runtime defaults.
func Read() Info {
	info := Info{OS: runtime.GOOS, Arch: runtime.GOARCH}
	info.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		info.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if name := osRelease("/etc/os-release"); name != "" {
		info.OS = name
	}
	return info
}

// osRelease returns PRETTY_NAME from an os-release file.
func osRelease(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}
