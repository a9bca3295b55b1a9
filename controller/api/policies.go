package api

import (
	"errors"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/policy"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func policyView(p *palisadev1.PolicyVersion, current uint64, full bool) (apiv1.Policy, error) {
	v := apiv1.Policy{
		Version: p.GetVersion(), Name: p.GetBundle().GetName(), SourceSHA256: p.GetBundle().GetSourceSha256(),
		SourceName: p.GetSourceName(), Current: p.GetVersion() == current, CreatedAt: timeOrNil(p.GetCreatedAt()),
		CreatedBy: p.GetCreatedBy(), Comment: p.GetComment(), RolledBackFrom: p.GetRolledBackFrom(),
	}
	if full {
		v.Source = string(p.GetSource())
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(p.GetBundle())
		if err != nil {
			return v, err
		}
		v.Bundle = b
	}
	return v, nil
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	var (
		ps  []*palisadev1.PolicyVersion
		cur uint64
	)
	s.d.Store.FSM().Read(func(st *fsm.State) {
		ps = st.Policies()
		if c := st.CurrentPolicy(); c != nil {
			cur = c.GetVersion()
		}
	})
	out := apiv1.PolicyList{Current: cur, Policies: make([]apiv1.Policy, 0, len(ps))}
	for _, p := range ps {
		v, _ := policyView(p, cur, false)
		out.Policies = append(out.Policies, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) writePolicy(w http.ResponseWriter, status int, version uint64) {
	var (
		p   *palisadev1.PolicyVersion
		ok  bool
		cur uint64
	)
	s.d.Store.FSM().Read(func(st *fsm.State) {
		p, ok = st.Policy(version)
		if c := st.CurrentPolicy(); c != nil {
			cur = c.GetVersion()
		}
	})
	if !ok {
		writeError(w, http.StatusNotFound, "no policy version "+strconv.FormatUint(version, 10))
		return
	}
	v, err := policyView(p, cur, true)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode bundle: "+err.Error())
		return
	}
	writeJSON(w, status, v)
}

func versionParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	v, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
	if err != nil || v == 0 {
		writeError(w, http.StatusBadRequest, "version: want a positive integer")
		return 0, false
	}
	return v, true
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	if v, ok := versionParam(w, r); ok {
		s.writePolicy(w, http.StatusOK, v)
	}
}

// policyProblemsBody is the error body of an invalid policy: the usual
// error and problems strings, plus the structured problems.
type policyProblemsBody struct {
	Error          string                `json:"error"`
	Problems       []string              `json:"problems"`
	PolicyProblems []apiv1.PolicyProblem `json:"policy_problems"`
}

// applyPolicy validates and compiles the document (every problem is
// listed, nothing of an invalid document is applied), and records the
// compiled bundle as the next version.
func (s *Server) applyPolicy(w http.ResponseWriter, r *http.Request) {
	var req apiv1.ApplyPolicyRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	var problems []string
	if req.Source == "" {
		problems = append(problems, "source: required (the policy YAML)")
	}
	problems = append(problems, checkText("comment", req.Comment, false)...)
	problems = append(problems, checkText("name", req.Name, false)...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid request", problems...)
		return
	}
	name := req.Name
	if name == "" {
		name = "policy"
	}
	b, err := policy.Compile([]byte(req.Source), name)
	if err == nil {
		err = policy.ValidateBundle(b)
	}
	if err == nil {
		// Compile the rules as agents will: a rule they would refuse is
		// refused here, with its file, line and CEL error.
		var ae *rules.ApplyError
		if rerr := rules.Check(b); errors.As(rerr, &ae) {
			body := policyProblemsBody{Error: "invalid policy: " + strconv.Itoa(len(ae.Problems)) + " rule(s) do not compile"}
			for _, p := range ae.Problems {
				body.Problems = append(body.Problems, p.String())
				body.PolicyProblems = append(body.PolicyProblems, apiv1.PolicyProblem{Path: "spec.rules[" + p.Rule + "].condition", Line: int(p.SourceLine), Message: p.Err})
			}
			writeJSON(w, http.StatusBadRequest, body)
			return
		} else if rerr != nil {
			err = rerr
		}
	}
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		body := policyProblemsBody{Error: "invalid policy: " + strconv.Itoa(len(ve.Problems)) + " problem(s)"}
		for _, p := range ve.Problems {
			body.Problems = append(body.Problems, p.String())
			body.PolicyProblems = append(body.PolicyProblems, apiv1.PolicyProblem{Path: p.Path, Line: p.Line, Message: p.Message})
		}
		writeJSON(w, http.StatusBadRequest, body)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid policy: "+err.Error())
		return
	}
	if req.DryRun {
		// Audited like every mutation route? A dry run changes nothing,
		// so it writes no audit entry and is answered here.
		bj, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
		writeJSON(w, http.StatusOK, apiv1.Policy{Name: b.GetName(), SourceSHA256: b.GetSourceSha256(), SourceName: name, Bundle: bj})
		return
	}
	pv := &palisadev1.PolicyVersion{Bundle: b, Source: []byte(req.Source), SourceName: name, Comment: req.Comment}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_ApplyPolicy{
		ApplyPolicy: &palisadev1.ApplyPolicyCmd{Policy: pv}}}, "")
	if !ok {
		return
	}
	s.writePolicy(w, http.StatusCreated, s.policyAt(res))
}

// policyAt is the version a policy command created (the FSM numbers
// versions and returns the number as the result id).
func (s *Server) policyAt(res *fsm.Result) uint64 {
	v, _ := strconv.ParseUint(res.ResultID, 10, 64)
	return v
}

func (s *Server) rollbackPolicy(w http.ResponseWriter, r *http.Request) {
	var req apiv1.RollbackRequest
	if !decodeBody(w, r, &req, true) {
		return
	}
	if problems := checkText("comment", req.Comment, false); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid request", problems...)
		return
	}
	to, ok := versionParam(w, r)
	if !ok {
		return
	}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RollbackPolicy{
		RollbackPolicy: &palisadev1.RollbackPolicyCmd{ToVersion: to, Comment: req.Comment}}}, "")
	if !ok {
		return
	}
	s.writePolicy(w, http.StatusCreated, s.policyAt(res))
}
