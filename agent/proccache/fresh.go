package proccache

// Read reads a process from /proc now, bypassing (and not updating) the
// cache: for decisions such as a kill, where a cached entry could describe
// an earlier process that had the same pid.
func (c *Cache) Read(pid uint32) (Process, error) { return c.readProc(pid) }
