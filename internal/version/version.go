// Package version holds the build's version, set with -ldflags.
package version

// Version is set at build time (-X .../internal/version.Version=...).
var Version = "dev"
