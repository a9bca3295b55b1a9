// Package config loads the configuration of a Palisade binary from, in
// increasing precedence: defaults, a YAML file, the environment and flags.
//
// Each binary has one struct (Agent, Controller) whose fields carry the
// key in a `yaml` tag, the flag's help in a `usage` tag and the default in
// a `default` tag. Everything else is derived from that one line: the flag
// (--state-dir for state_dir), the environment variable
// (PALISADE_AGENT_STATE_DIR) and the file key. Fields with the same name as
// a field of daemon.Config or server.Config are copied there by Into; a test
// fails when either of those structs has a field with no key here.
//
// The file is strict: an unknown key, a duplicate key or a value of the
// wrong type is reported by name and line, and every problem is reported,
// not only the first.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Spec names a binary's configuration.
type Spec struct {
	// Name is the binary's short name: "agent" reads /etc/palisade/agent.yaml
	// and PALISADE_AGENT_* variables.
	Name string
	// DefaultPath is the file read when --config is not given; a missing
	// default file is not an error.
	DefaultPath string
}

// EnvPrefix is the prefix of the binary's environment variables.
func (s Spec) EnvPrefix() string { return "PALISADE_" + strings.ToUpper(s.Name) + "_" }

// ConfigEnv names the variable that overrides the config file's path.
func (s Spec) ConfigEnv() string { return s.EnvPrefix() + "CONFIG" }

// Field is one configuration key.
type Field struct {
	Key     string // file key, e.g. state_dir
	Name    string // Go field name, e.g. StateDir
	Usage   string
	Default string
	index   int
	typ     reflect.Type
}

// Flag is the field's flag name, e.g. state-dir.
func (f Field) Flag() string { return strings.ReplaceAll(f.Key, "_", "-") }

// Env is the field's environment variable under spec.
func (f Field) Env(s Spec) string { return s.EnvPrefix() + strings.ToUpper(f.Key) }

var durationType = reflect.TypeFor[time.Duration]()

// Fields lists the keys of a config struct (pointer or value). It panics on
// a field it cannot handle: that is a programming error a test catches.
func Fields(cfg any) []Field {
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			panic(fmt.Sprintf("config: field %s.%s has no yaml key", t.Name(), sf.Name))
		}
		if !supported(sf.Type) {
			panic(fmt.Sprintf("config: field %s.%s has unsupported type %s", t.Name(), sf.Name, sf.Type))
		}
		out = append(out, Field{Key: key, Name: sf.Name, Usage: sf.Tag.Get("usage"),
			Default: sf.Tag.Get("default"), index: i, typ: sf.Type})
	}
	return out
}

func supported(t reflect.Type) bool {
	if t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// setString parses s into v; it is the one parser for defaults, the
// environment and flags (and scalars in the file). appendList adds to a
// list instead of replacing it (a repeated flag).
func setString(v reflect.Value, s string, appendList bool) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (want e.g. 10s, 1m30s)", s)
		}
		if d < 0 {
			return fmt.Errorf("%q: a duration may not be negative", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (want true or false)", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", s)
		}
		v.SetUint(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		if appendList {
			items = append(v.Interface().([]string), items...)
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Source string // file path, "env PALISADE_AGENT_X" or "flag --x"
	Line   int    // in the file; 0 when not from a file
	Key    string
	Msg    string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found; it is the error Load and Check return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validator is implemented by config structs that check their values
// beyond their types. Problems name the key; Load adds where it was set.
type Validator interface {
	Validate() Problems
}

// Binding ties a config struct to a flag set, the environment and a file.
type Binding struct {
	spec   Spec
	cfg    reflect.Value // the struct
	fields []Field
	fs     *flag.FlagSet

	configPath string
	flagVals   []flagVal // in command-line order
	// LookupEnv reads the environment (os.LookupEnv unless a test sets it).
	LookupEnv func(string) (string, bool)
	// MissingOK: a missing --config file is no error (install and enroll
	// create it); a missing default file never is.
	MissingOK bool

	path    string            // file read by the last Load ("" for none)
	sources map[string]Source // key → where its value came from
}

// Source says where a value came from.
type Source struct {
	Where string // "default", file path, "env NAME" or "flag --name"
	Line  int
}

type flagVal struct {
	f     Field
	value string
}

// Bind registers a flag for every field of cfg (a pointer to a config
// struct) and --config on fs. Call Load after fs.Parse.
func Bind(fs *flag.FlagSet, spec Spec, cfg any) *Binding {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic("config: Bind needs a pointer to a struct")
	}
	b := &Binding{spec: spec, cfg: v.Elem(), fields: Fields(cfg), fs: fs, LookupEnv: os.LookupEnv}
	fs.StringVar(&b.configPath, "config", "",
		fmt.Sprintf("configuration file (default %s; env %s)", spec.DefaultPath, spec.ConfigEnv()))
	for _, f := range b.fields {
		fs.Var(&flagValue{b: b, f: f}, f.Flag(), fmt.Sprintf("%s (env %s, key %s)", f.Usage, f.Env(spec), f.Key))
	}
	return b
}

type flagValue struct {
	b *Binding
	f Field
}

func (v *flagValue) String() string {
	if v == nil || v.b == nil {
		return ""
	}
	return v.f.Default
}

func (v *flagValue) Set(s string) error {
	// Parse now so a bad flag is reported by the flag package, with usage.
	scratch := reflect.New(v.f.typ).Elem()
	if err := setString(scratch, s, false); err != nil {
		return errors.New(strings.TrimSpace(err.Error()))
	}
	v.b.flagVals = append(v.b.flagVals, flagVal{v.f, s})
	return nil
}

func (v *flagValue) IsBoolFlag() bool { return v.f.typ.Kind() == reflect.Bool }

// Path is the configuration file in effect: --config, then the
// environment, then the default.
func (b *Binding) Path() (path string, explicit bool) {
	if b.configPath != "" {
		return b.configPath, true
	}
	if p, ok := b.LookupEnv(b.spec.ConfigEnv()); ok && p != "" {
		return p, true
	}
	return b.spec.DefaultPath, false
}

// Load fills the struct: defaults, then the file, then the environment,
// then the flags given on the command line; then it validates. It returns
// Problems listing everything wrong.
func (b *Binding) Load() error {
	return b.load(true, true)
}

// LoadFile fills the struct from defaults and the file only, and validates:
// what `config check` reports.
func (b *Binding) LoadFile() error {
	return b.load(false, false)
}

func (b *Binding) load(env, flags bool) error {
	b.cfg.SetZero()
	b.sources = map[string]Source{}
	var probs Problems
	for _, f := range b.fields {
		b.sources[f.Key] = Source{Where: "default"}
		if f.Default == "" {
			continue
		}
		if err := setString(b.cfg.Field(f.index), f.Default, false); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", f.Key, err))
		}
	}

	path, explicit := b.Path()
	b.path = ""
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		b.path = path
		probs = append(probs, b.decode(path, data)...)
	case errors.Is(err, os.ErrNotExist) && (!explicit || b.MissingOK):
	default:
		probs = append(probs, Problem{Source: path, Msg: err.Error()})
	}

	if env {
		for _, f := range b.fields {
			name := f.Env(b.spec)
			s, ok := b.LookupEnv(name)
			if !ok {
				continue
			}
			if err := setString(b.cfg.Field(f.index), s, false); err != nil {
				probs = append(probs, Problem{Source: "env " + name, Key: f.Key, Msg: err.Error()})
				continue
			}
			b.sources[f.Key] = Source{Where: "env " + name}
		}
	}
	if flags {
		seen := map[string]bool{}
		for _, fv := range b.flagVals {
			if err := setString(b.cfg.Field(fv.f.index), fv.value, seen[fv.f.Key]); err != nil {
				probs = append(probs, Problem{Source: "flag --" + fv.f.Flag(), Key: fv.f.Key, Msg: err.Error()})
				continue
			}
			seen[fv.f.Key] = true
			b.sources[fv.f.Key] = Source{Where: "flag --" + fv.f.Flag()}
		}
	}

	if v, ok := b.cfg.Addr().Interface().(Validator); ok {
		bad := map[string]bool{}
		for _, p := range probs {
			bad[p.Key] = true
		}
		for _, p := range v.Validate() {
			if bad[p.Key] && p.Key != "" {
				continue // already reported as unparseable
			}
			if src, ok := b.sources[p.Key]; ok && p.Source == "" {
				p.Source, p.Line = src.Where, src.Line
				if p.Source == "default" {
					p.Source = ""
				}
			}
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool {
			return probs[i].Source == probs[j].Source && probs[i].Line < probs[j].Line
		})
		return probs
	}
	return nil
}

// File is the file the last Load read ("" when none was).
func (b *Binding) File() string { return b.path }

// Sources says where each key's value came from in the last Load.
func (b *Binding) Sources() map[string]Source { return b.sources }

// FlagsSet lists the keys given as flags, in command-line order.
func (b *Binding) FlagsSet() []string {
	var keys []string
	seen := map[string]bool{}
	for _, fv := range b.flagVals {
		if !seen[fv.f.Key] {
			seen[fv.f.Key] = true
			keys = append(keys, fv.f.Key)
		}
	}
	return keys
}

// Into copies every field of src (a config struct) to the field of the
// same name in dst (a pointer to daemon.Config, server.Config, …). Fields
// dst lacks are the binary's own (log settings) and are skipped.
func Into(dst, src any) {
	d := reflect.ValueOf(dst).Elem()
	s := reflect.Indirect(reflect.ValueOf(src))
	for i := range s.NumField() {
		name := s.Type().Field(i).Name
		if df := d.FieldByName(name); df.IsValid() && df.CanSet() {
			df.Set(s.Field(i).Convert(df.Type()))
		}
	}
}
