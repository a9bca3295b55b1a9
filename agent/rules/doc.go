// Package rules is the agent's detection-rules engine: CEL conditions
// (github.com/google/cel-go v0.31.0) over a typed view of each sensor
// event, yielding *palisadev1.Alert and, in enforce mode, a local response.
//
// # API
//
//	e, err := rules.NewEngine(rules.Config{HostID, Scope, BootTime, Block, Agent, ...})
//	defaults, err := rules.DefaultRules(bundle.GetDefaultMode())   // embedded pack
//	err = e.Apply(rules.Merge(defaults, bundle.GetRules()))        // all or nothing
//	alerts := e.Evaluate(ev)                                       // every event, in order
//	e.SetIOCs([]string{"203.0.113.7", "198.51.100.0/24"})
//	e.SetLeakedKeys(keySet)                                        // *hunt.KeySet
//	n, err := e.KillProcess(pid, startTime, tree)                  // KillProcessCommand too
//	alerts = e.HuntAlerts(huntResult)                              // processes a hunt found
//
// # Design
//
// One CEL environment is built per engine. The event views (process,
// exec, exit, file, connect, agent) are declared as object types through
// a custom type provider whose field getters read the protobuf event
// directly, so evaluating a field is a function call and no per-event map
// or proto reflection is built. Fields that need /proc
// (process.stdin_is_socket, stdout_is_socket, exe_deleted, environ) are
// read lazily, on first use in an evaluation, so a rule pays for them only
// when its cheaper conditions (left of &&) already hold.
//
// Apply compiles each rule once, requires a bool result, and rejects the
// whole set on any error (*ApplyError: rule, source file, line, CEL
// message); the previous set stays in force. A compiled set is swapped in
// with one atomic pointer store. At Apply each condition is also
// partially evaluated with only `kind` known: a rule that is definitely
// false for a kind is never run on events of that kind (most rules test
// kind first), which is what keeps exit events at tens of nanoseconds.
//
// Responses run only in enforce mode, inside Evaluate, and are recorded in
// the alert (response_taken, response_error): kill and kill_tree open a
// pidfd, check the process start time (pid reuse) and the scope cgroup,
// and signal through the pidfd; kill_tree SIGSTOPs the whole tree before
// SIGKILLing it. block calls Config.Block with the connect destination.
//
// Limits: /proc-derived fields are read when the event is evaluated, not
// when it happened — a process that already exited has no sockets, no
// environment and no deleted image. The sensor reports no file writes, so
// "downloaded moments ago" rests on the downloader's argv (curl -o/-O,
// wget -O/default name) seen at its exec. See docs/rules.md for the rule
// vocabulary and the default pack.
package rules
