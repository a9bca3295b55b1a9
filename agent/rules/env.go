package rules

import (
	"fmt"
	"path"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// CEL type names of the event views.
const (
	typeProcess  = "palisade.Process"
	typeAncestor = "palisade.Ancestor"
	typeExec     = "palisade.Exec"
	typeExit     = "palisade.Exit"
	typeFile     = "palisade.File"
	typeConnect  = "palisade.Connect"
	typeAgent    = "palisade.Agent"
)

var (
	processType  = types.NewObjectType(typeProcess)
	ancestorType = types.NewObjectType(typeAncestor)
	execType     = types.NewObjectType(typeExec)
	exitType     = types.NewObjectType(typeExit)
	fileType     = types.NewObjectType(typeFile)
	connectType  = types.NewObjectType(typeConnect)
	agentType    = types.NewObjectType(typeAgent)
	stringList   = types.NewListType(types.StringType)
)

// field is one field of a view type: its CEL type and a getter from the
// view (a pointer to one of the view structs below). Getters return
// ref.Val so the interpreter needs no further adaptation.
type field struct {
	t   *types.Type
	get func(obj any) ref.Val
}

// structDef is one view type as the checker and the interpreter see it.
type structDef struct {
	t      *types.Type
	fields map[string]*types.FieldType
	names  []string
}

func newStructDef(t *types.Type, fs map[string]field) *structDef {
	d := &structDef{t: t, fields: map[string]*types.FieldType{}}
	for name, f := range fs {
		get := f.get
		d.fields[name] = &types.FieldType{
			Type:    f.t,
			IsSet:   func(any) bool { return true },
			GetFrom: func(obj any) (any, error) { return get(obj), nil },
		}
		d.names = append(d.names, name)
	}
	return d
}

func verdictString(v palisadev1.Verdict) types.String {
	switch v {
	case palisadev1.Verdict_VERDICT_ALLOWED:
		return "allowed"
	case palisadev1.Verdict_VERDICT_AUDITED:
		return "audited"
	case palisadev1.Verdict_VERDICT_DENIED:
		return "denied"
	case palisadev1.Verdict_VERDICT_KILLED:
		return "killed"
	}
	return ""
}

// The view structs. One activation (one event) holds one of each; fields
// that need /proc are computed on first access and remembered.

func pv(obj any) *procView { return obj.(*procView) }

var processFields = map[string]field{
	"pid":        {types.IntType, func(o any) ref.Val { return types.Int(pv(o).p.GetPid()) }},
	"ppid":       {types.IntType, func(o any) ref.Val { return types.Int(pv(o).p.GetPpid()) }},
	"uid":        {types.IntType, func(o any) ref.Val { return types.Int(pv(o).p.GetUid()) }},
	"gid":        {types.IntType, func(o any) ref.Val { return types.Int(pv(o).p.GetGid()) }},
	"cgroup_id":  {types.IntType, func(o any) ref.Val { return types.Int(int64(pv(o).p.GetCgroupId())) }},
	"comm":       {types.StringType, func(o any) ref.Val { return types.String(pv(o).p.GetComm()) }},
	"exe_path":   {types.StringType, func(o any) ref.Val { return pv(o).exePath() }},
	"exe_sha256": {types.StringType, func(o any) ref.Val { return types.String(pv(o).p.GetExeSha256()) }},
	"argv": {stringList, func(o any) ref.Val {
		v := pv(o)
		return types.NewStringList(v.a.eng.prov, v.p.GetArgv())
	}},
	"ancestry":         {types.NewListType(ancestorType), func(o any) ref.Val { return pv(o).ancestry() }},
	"ancestor_exes":    {stringList, func(o any) ref.Val { return pv(o).ancestorExes() }},
	"stdin_is_socket":  {types.BoolType, func(o any) ref.Val { return types.Bool(pv(o).fds().stdinSocket) }},
	"stdout_is_socket": {types.BoolType, func(o any) ref.Val { return types.Bool(pv(o).fds().stdoutSocket) }},
	"exe_deleted":      {types.BoolType, func(o any) ref.Val { return types.Bool(pv(o).exeDeleted()) }},
	"environ":          {stringList, func(o any) ref.Val { return pv(o).environ() }},
}

func anc(obj any) *palisadev1.Ancestor { return obj.(*palisadev1.Ancestor) }

var ancestorFields = map[string]field{
	"pid":      {types.IntType, func(o any) ref.Val { return types.Int(anc(o).GetPid()) }},
	"exe_path": {types.StringType, func(o any) ref.Val { return types.String(anc(o).GetExePath()) }},
	"argv":     {stringList, func(o any) ref.Val { return types.NewStringList(types.DefaultTypeAdapter, anc(o).GetArgv()) }},
}

func ex(obj any) *palisadev1.ExecEvent { return obj.(*execView).e }

type execView struct{ e *palisadev1.ExecEvent }

var execFields = map[string]field{
	"filename": {types.StringType, func(o any) ref.Val { return types.String(ex(o).GetFilename()) }},
	"verdict":  {types.StringType, func(o any) ref.Val { return verdictString(ex(o).GetVerdict()) }},
	"reason":   {types.StringType, func(o any) ref.Val { return types.String(ex(o).GetReason()) }},
}

type exitView struct{ e *palisadev1.ExitEvent }

func xv(obj any) *palisadev1.ExitEvent { return obj.(*exitView).e }

var exitFields = map[string]field{
	"code":   {types.IntType, func(o any) ref.Val { return types.Int(xv(o).GetExitCode()) }},
	"signal": {types.IntType, func(o any) ref.Val { return types.Int(xv(o).GetSignal()) }},
}

type fileView struct{ f *palisadev1.FileOpenEvent }

func fv(obj any) *palisadev1.FileOpenEvent { return obj.(*fileView).f }

var fileFields = map[string]field{
	"path":       {types.StringType, func(o any) ref.Val { return types.String(fv(o).GetPath()) }},
	"verdict":    {types.StringType, func(o any) ref.Val { return verdictString(fv(o).GetVerdict()) }},
	"rule":       {types.StringType, func(o any) ref.Val { return types.String(fv(o).GetRule()) }},
	"honeytoken": {types.BoolType, func(o any) ref.Val { return types.Bool(fv(o).GetHoneytoken()) }},
	"flags":      {types.IntType, func(o any) ref.Val { return types.Int(fv(o).GetFlags()) }},
	"inode":      {types.IntType, func(o any) ref.Val { return types.Int(int64(fv(o).GetInode())) }},
}

type connectView struct{ c *palisadev1.ConnectEvent }

func cv(obj any) *palisadev1.ConnectEvent { return obj.(*connectView).c }

var connectFields = map[string]field{
	"protocol": {types.StringType, func(o any) ref.Val { return types.String(cv(o).GetProtocol()) }},
	"addr":     {types.StringType, func(o any) ref.Val { return types.String(cv(o).GetDstAddr()) }},
	"port":     {types.IntType, func(o any) ref.Val { return types.Int(cv(o).GetDstPort()) }},
	"verdict":  {types.StringType, func(o any) ref.Val { return verdictString(cv(o).GetVerdict()) }},
	"reason":   {types.StringType, func(o any) ref.Val { return types.String(cv(o).GetReason()) }},
}

func ag(obj any) *agentState { return obj.(*agentState) }

var agentFields = map[string]field{
	"pid":   {types.IntType, func(o any) ref.Val { return types.Int(ag(o).info.PID) }},
	"exe":   {types.StringType, func(o any) ref.Val { return types.String(ag(o).info.Exe) }},
	"paths": {stringList, func(o any) ref.Val { return ag(o).paths }},
}

// provider declares the view types to the checker and hands the
// interpreter their precomputed field getters; everything else goes to the
// standard registry.
type provider struct {
	base    *types.Registry
	structs map[string]*structDef
}

func newProvider() (*provider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	p := &provider{base: reg, structs: map[string]*structDef{}}
	for t, fs := range map[*types.Type]map[string]field{
		processType: processFields, ancestorType: ancestorFields, execType: execFields, exitType: exitFields,
		fileType: fileFields, connectType: connectFields, agentType: agentFields,
	} {
		p.structs[t.TypeName()] = newStructDef(t, fs)
	}
	return p, nil
}

func (p *provider) EnumValue(name string) ref.Val { return p.base.EnumValue(name) }

func (p *provider) FindIdent(name string) (ref.Val, bool) {
	if d, ok := p.structs[name]; ok {
		return d.t, true
	}
	return p.base.FindIdent(name)
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if d, ok := p.structs[name]; ok {
		return types.NewTypeTypeWithParam(d.t), true
	}
	return p.base.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if d, ok := p.structs[name]; ok {
		return d.names, true
	}
	return p.base.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if d, ok := p.structs[name]; ok {
		ft, ok := d.fields[fieldName]
		return ft, ok
	}
	return p.base.FindStructFieldType(name, fieldName)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[name]; ok {
		return types.NewErr("%s values cannot be constructed in a rule", name)
	}
	return p.base.NewValue(name, fields)
}

// NativeToValue wraps the view structs (when a rule uses a whole view,
// e.g. an element of process.ancestry) and defers the rest.
func (p *provider) NativeToValue(v any) ref.Val {
	switch o := v.(type) {
	case *procView:
		return &object{v: o, def: p.structs[typeProcess]}
	case *palisadev1.Ancestor:
		return &object{v: o, def: p.structs[typeAncestor]}
	case *execView:
		return &object{v: o, def: p.structs[typeExec]}
	case *exitView:
		return &object{v: o, def: p.structs[typeExit]}
	case *fileView:
		return &object{v: o, def: p.structs[typeFile]}
	case *connectView:
		return &object{v: o, def: p.structs[typeConnect]}
	case *agentState:
		return &object{v: o, def: p.structs[typeAgent]}
	}
	return p.base.NativeToValue(v)
}

// object is a view struct as a CEL value.
type object struct {
	v   any
	def *structDef
}

var _ traits.Indexer = (*object)(nil)

func (o *object) ConvertToNative(reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to a native value", o.def.t.TypeName())
}

func (o *object) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return o.def.t
	}
	return types.NewErr("type conversion error from %s to %s", o.def.t.TypeName(), t.TypeName())
}

func (o *object) Equal(other ref.Val) ref.Val {
	if x, ok := other.(*object); ok {
		return types.Bool(x.v == o.v)
	}
	return types.False
}

func (o *object) Type() ref.Type { return o.def.t }
func (o *object) Value() any     { return o.v }

func (o *object) Get(index ref.Val) ref.Val {
	name, ok := index.(types.String)
	if !ok {
		return types.NewErr("no such key: %v", index)
	}
	ft, ok := o.def.fields[string(name)]
	if !ok {
		return types.NewErr("no such field: %s", name)
	}
	v, _ := ft.GetFrom(o.v)
	return v.(ref.Val)
}

// newEnv is the one CEL environment every rule compiles against. The
// functions that need engine state (IOCs, leaked keys, downloads, the
// agent's own paths) close over e.
func newEnv(e *Engine, p *provider) (*cel.Env, error) {
	str1 := func(name string, res *types.Type, fn func(string) ref.Val) cel.EnvOption {
		return cel.Function(name, cel.Overload(name+"_string", []*types.Type{types.StringType}, res,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, ok := v.(types.String)
				if !ok {
					return types.NoSuchOverloadErr()
				}
				return fn(string(s))
			})))
	}
	list1 := func(name string, fn func([]string) bool) cel.EnvOption {
		return cel.Function(name, cel.Overload(name+"_list", []*types.Type{stringList}, types.BoolType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				ss, err := stringsOf(v)
				if err != nil {
					return types.WrapErr(err)
				}
				return types.Bool(fn(ss))
			})))
	}
	return cel.NewEnv(
		cel.CustomTypeProvider(p),
		cel.CustomTypeAdapter(p),
		cel.Variable("kind", types.StringType),
		cel.Variable("process", processType),
		cel.Variable("exec", execType),
		cel.Variable("exit", exitType),
		cel.Variable("file", fileType),
		cel.Variable("connect", connectType),
		cel.Variable("agent", agentType),
		cel.Variable("mining_ports", types.NewMapType(types.IntType, types.BoolType)),
		cel.Variable("shells", types.NewMapType(types.StringType, types.BoolType)),
		cel.Variable("downloaders", types.NewMapType(types.StringType, types.BoolType)),
		cel.Variable("leaked_keys_active", types.BoolType),
		str1("basename", types.StringType, func(s string) ref.Val { return types.String(path.Base(s)) }),
		str1("is_ioc", types.BoolType, func(s string) ref.Val { return types.Bool(e.isIOC(s)) }),
		str1("recently_downloaded", types.BoolType, func(s string) ref.Val {
			_, ok := e.downloads.lookup(s, e.now())
			return types.Bool(ok)
		}),
		str1("is_agent_path", types.BoolType, func(s string) ref.Val { return types.Bool(e.agent.Load().isAgentPath(s)) }),
		list1("has_leaked_key", func(ss []string) bool { return e.hasLeakedKey(ss) }),
		list1("mentions_agent", func(ss []string) bool { return e.agent.Load().mentioned(ss) }),
	)
}

func stringsOf(v ref.Val) ([]string, error) {
	if ss, ok := v.Value().([]string); ok {
		return ss, nil
	}
	l, ok := v.(traits.Lister)
	if !ok {
		return nil, fmt.Errorf("not a list: %s", v.Type().TypeName())
	}
	var out []string
	for it := l.Iterator(); it.HasNext() == types.True; {
		s, ok := it.Next().(types.String)
		if !ok {
			return nil, fmt.Errorf("list element is not a string")
		}
		out = append(out, string(s))
	}
	return out, nil
}

// kinds are the values of the kind variable.
var kinds = []string{"exec", "exit", "file", "connect"}

func kindOf(ev *palisadev1.Event) string {
	switch ev.GetKind().(type) {
	case *palisadev1.Event_Exec:
		return "exec"
	case *palisadev1.Event_Exit:
		return "exit"
	case *palisadev1.Event_FileOpen:
		return "file"
	case *palisadev1.Event_Connect:
		return "connect"
	}
	return ""
}

func trimDeleted(s string) string { return strings.TrimSuffix(s, " (deleted)") }
