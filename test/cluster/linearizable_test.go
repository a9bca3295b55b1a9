package cluster

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// register is one host label seen as a read/write register.
type regInput struct {
	write bool
	value string
}

var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return "write " + in.value
		}
		return fmt.Sprintf("read -> %v", output)
	},
}

// faultDuration is how long the randomized schedule runs
// (PALISADE_FAULT_DURATION overrides, e.g. "5m" under make soak).
func faultDuration(t *testing.T) time.Duration {
	if v := os.Getenv("PALISADE_FAULT_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PALISADE_FAULT_DURATION: %v", err)
		}
		return d
	}
	if testing.Short() {
		return 5 * time.Second
	}
	return 25 * time.Second
}

// While a random schedule kills, restarts and isolates nodes, clients
// write a host label and read it back (linearizable reads); the history
// must be linearizable. A write whose outcome is unknown (the client gave
// up) may or may not have happened, so it is recorded as never returning.
func TestLinearizable_RandomFaults(t *testing.T) {
	c := controllertest.Cluster(t, 3)
	tok := c.AdminToken()
	host := enrolHost(t, c.AdminClient())
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PALISADE_FAULT_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("fault seed %d (PALISADE_FAULT_SEED to replay the schedule)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu  sync.Mutex
		ops []porcupine.Operation
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultDuration(t))
	defer cancel()
	var wg sync.WaitGroup
	for id := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := apiclient.New(joinURLs(c.URLs()), tok)
			if err != nil {
				t.Error(err)
				return
			}
			cl.RetryFor = 3 * time.Second
			for i := 0; ctx.Err() == nil; i++ {
				if i%2 == 0 {
					v := fmt.Sprintf("c%d-%d", id, i)
					call := now()
					err := cl.Do(context.Background(), http.MethodPut, "/api/v1/hosts/"+host+"/labels", nil,
						apiv1.SetLabelsRequest{Labels: map[string]string{"v": v}}, nil)
					ret := now()
					if err != nil {
						ret = math.MaxInt64 // unknown outcome
					}
					record(porcupine.Operation{ClientId: id, Input: regInput{write: true, value: v}, Call: call, Return: ret})
					continue
				}
				call := now()
				var h apiv1.Host
				err := cl.Do(context.Background(), http.MethodGet, "/api/v1/hosts/"+host, map[string][]string{"consistent": {"true"}}, nil, &h)
				ret := now()
				if err != nil {
					continue // a failed read says nothing
				}
				record(porcupine.Operation{ClientId: id, Input: regInput{}, Output: h.Labels["v"], Call: call, Return: ret})
			}
		}()
	}
	// The fault schedule: at most one node down or isolated at a time, so
	// the cluster can always make progress; every fault is healed.
	faults := 0
	for ctx.Err() == nil {
		victim := rng.IntN(3)
		kind := rng.IntN(2)
		hold := time.Duration(200+rng.IntN(1500)) * time.Millisecond
		if kind == 0 {
			t.Logf("%6.2fs: kill n%d", time.Since(start).Seconds(), victim+1)
			c.Stop(victim)
		} else if nd := c.Node(victim); nd != nil {
			t.Logf("%6.2fs: isolate n%d", time.Since(start).Seconds(), victim+1)
			nd.Store().SetIsolated(true)
		}
		faults++
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		if c.Node(victim) == nil {
			c.Start(victim)
		} else {
			c.Node(victim).Store().SetIsolated(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(200+rng.IntN(800)) * time.Millisecond):
		}
	}
	wg.Wait()
	writes, reads := 0, 0
	for _, op := range ops {
		if op.Input.(regInput).write && op.Return != math.MaxInt64 {
			writes++
		} else if !op.Input.(regInput).write {
			reads++
		}
	}
	t.Logf("%d faults, %d operations (%d acknowledged writes, %d reads)", faults, len(ops), writes, reads)
	if writes < 10 || reads < 10 {
		t.Fatalf("too few operations completed (%d writes, %d reads): the cluster did not make progress", writes, reads)
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 2*time.Minute)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		if f, err := os.Create(path); err == nil {
			_ = porcupine.Visualize(registerModel, info, f)
			f.Close()
		}
		t.Fatalf("history is not linearizable (%v); visualisation in %s", res, path)
	}
}

func joinURLs(u []string) string {
	s := ""
	for i, x := range u {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}
