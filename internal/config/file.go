package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// decode applies a YAML file to the struct, collecting every problem.
func (b *Binding) decode(path string, data []byte) Problems {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Problems{{Source: path, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(doc.Content) == 0 {
		return nil // empty or only comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Tag == "!!null" {
			return nil
		}
		return Problems{{Source: path, Line: root.Line, Msg: "want a mapping of keys to values"}}
	}
	byKey := map[string]Field{}
	for _, f := range b.fields {
		byKey[f.Key] = f
	}
	var probs Problems
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f, ok := byKey[k.Value]
		if !ok {
			probs = append(probs, Problem{Source: path, Line: k.Line, Key: k.Value,
				Msg: "unknown key" + suggest(k.Value, b.fields)})
			continue
		}
		if line, dup := seen[k.Value]; dup {
			probs = append(probs, Problem{Source: path, Line: k.Line, Key: k.Value,
				Msg: fmt.Sprintf("duplicate key (first on line %d)", line)})
			continue
		}
		seen[k.Value] = k.Line
		if err := setNode(b.cfg.Field(f.index), v); err != nil {
			probs = append(probs, Problem{Source: path, Line: v.Line, Key: k.Value, Msg: err.Error()})
			continue
		}
		b.sources[f.Key] = Source{Where: path, Line: k.Line}
	}
	return probs
}

func setNode(v reflect.Value, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.SetZero()
		return nil
	}
	if v.Kind() == reflect.Slice && v.Type() != durationType {
		if n.Kind != yaml.SequenceNode {
			return errors.New("want a list, e.g. [a, b]")
		}
		items := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a list of strings", c.Line)
			}
			items = append(items, c.Value)
		}
		v.Set(reflect.ValueOf(items))
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a single value, not a %s", kindName(n.Kind))
	}
	return setString(v, n.Value, false)
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "node"
}

// suggest names the closest known key, if one is close.
func suggest(key string, fields []Field) string {
	best, bestD := "", 4
	for _, f := range fields {
		if d := distance(key, f.Key); d < bestD {
			best, bestD = f.Key, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.Key
	}
	sort.Strings(keys)
	return " (known keys: " + strings.Join(keys, ", ") + ")"
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// WriteFlags writes the values given as flags into the configuration file
// (what `install` does), keeping the file's other keys and its comments.
// Keys listed in skip are not written. It returns the keys written.
func (b *Binding) WriteFlags(skip ...string) (path string, written []string, err error) {
	path, _ = b.Path()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return path, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return path, nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind == 0 {
		doc.Kind = yaml.DocumentNode
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	root := doc.Content[0]
	root.Style = 0 // block style even if the file had {}
	byKey := map[string]Field{}
	for _, f := range b.fields {
		byKey[f.Key] = f
	}
	for _, key := range b.FlagsSet() {
		if contains(skip, key) {
			continue
		}
		f := byKey[key]
		val := encodeValue(b.cfg.Field(f.index))
		replaced := false
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == key {
				val.LineComment = root.Content[i+1].LineComment
				root.Content[i+1] = val
				replaced = true
			}
		}
		if !replaced {
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
		}
		written = append(written, key)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return path, nil, err
	}
	if err := enc.Close(); err != nil {
		return path, nil, err
	}
	return path, written, writeFileKeepOwner(path, buf.Bytes())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func encodeValue(v reflect.Value) *yaml.Node {
	n := &yaml.Node{}
	var x any = v.Interface()
	if v.Type() == durationType {
		x = v.Interface().(fmt.Stringer).String()
	}
	if err := n.Encode(x); err != nil {
		panic(err) // supported types always encode
	}
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	return n
}

// writeFileKeepOwner replaces path atomically. A new file is 0640 (it may
// hold an enrolment token); an existing one keeps its mode and owner (the
// controller's is root:palisade).
func writeFileKeepOwner(path string, data []byte) error {
	mode := os.FileMode(0o640)
	uid, gid := -1, -1
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if uid >= 0 {
		if err := tmp.Chown(uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
