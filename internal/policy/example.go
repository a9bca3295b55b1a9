package policy

import _ "embed"

//go:embed example.yaml
var exampleYAML string

// Example returns a valid example policy document, the one docs/policy.md
// shows. Tests and demos may start from it.
func Example() []byte { return []byte(exampleYAML) }
