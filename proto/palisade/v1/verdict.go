package palisadev1

// Verdict is the event's verdict, whatever its kind (ALLOWED for kinds
// that carry none). Hand-written beside the generated code.
func (e *Event) Verdict() Verdict {
	switch k := e.GetKind().(type) {
	case *Event_Exec:
		return k.Exec.GetVerdict()
	case *Event_FileOpen:
		return k.FileOpen.GetVerdict()
	case *Event_Connect:
		return k.Connect.GetVerdict()
	}
	return Verdict_VERDICT_ALLOWED
}
