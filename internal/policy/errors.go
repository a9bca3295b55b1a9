package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a policy document or bundle.
type Problem struct {
	// Path locates the offending value: "spec.network.deny[1]" in a
	// document, "network.deny[1]" (protobuf field names) in a bundle. It is
	// empty for problems with the document as a whole.
	Path string `json:"path"`
	// Line is the 1-based line in the document; 0 when unknown (bundles).
	Line int `json:"line,omitempty"`
	// Message says what is wrong, quoting the offending value.
	Message string `json:"message"`
}

// String formats the problem as "line 12: spec.network.deny[1]: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a policy document or
// bundle. Parse, Compile and ValidateBundle return it (use errors.As);
// nothing of an invalid document or bundle may be applied.
type ValidationError struct {
	// Source names the document (Parse's source argument) or "bundle".
	Source string `json:"source"`
	// Problems in document order; never empty. Collection stops after
	// MaxProblems, and the last problem then says so.
	Problems []Problem `json:"problems"`
	// Err is the underlying cause when there is one (a YAML syntax error),
	// else nil.
	Err error `json:"-"`
}

// Error lists all problems, one per line after a summary line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	src := e.Source
	if src == "" {
		src = "policy"
	}
	if len(e.Problems) == 1 {
		fmt.Fprintf(&b, "invalid %s: %s", src, e.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "invalid %s: %d problems:", src, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *ValidationError) Unwrap() error { return e.Err }

// problems collects Problems, stopping at MaxProblems so that a hostile
// document cannot make the error itself unbounded.
type problems struct {
	list []Problem
	full bool
}

func (ps *problems) addf(path string, line int, format string, args ...any) {
	if ps.full {
		return
	}
	if len(ps.list) == MaxProblems-1 {
		ps.list = append(ps.list, Problem{Message: fmt.Sprintf("too many problems; stopped after %d", MaxProblems-1)})
		ps.full = true
		return
	}
	ps.list = append(ps.list, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) err(source string, cause error) error {
	if len(ps.list) == 0 {
		return nil
	}
	// Walk order is schema order; report in document order. The
	// truncation notice, if any, stays last.
	sortable := ps.list
	if ps.full {
		sortable = ps.list[:len(ps.list)-1]
	}
	slices.SortStableFunc(sortable, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Source: source, Problems: ps.list, Err: cause}
}
