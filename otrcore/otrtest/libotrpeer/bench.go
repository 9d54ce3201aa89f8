package libotrpeer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmark workloads understood by RunBench. Each runs inside one peer
// process with two libotr userstates (alice and bob, 1024-bit DSA keys
// generated beforehand, policy OTRL_POLICY_DEFAULT, protocol v3) exchanging
// messages through memory; one warm-up operation precedes the timed ones.
const (
	// BenchAKE: one operation is a full AKE on both sides, from alice's
	// query message until both sides are gone_secure, with fresh contexts
	// (otrl_context_forget_all on both sides, untimed, before each run).
	BenchAKE = "ake"
	// BenchAlternating: one operation is a 100-byte data message,
	// encrypted and decrypted, with the direction alternating every
	// message (so every message triggers a DH key rotation).
	BenchAlternating = "alternating"
	// BenchBurst100 and BenchBurst400: one operation is a 100- or
	// 400-byte data message from alice to bob, always the same direction.
	// Any "burstSIZE" (SIZE 1 to 65536) is accepted.
	BenchBurst100 = "burst100"
	BenchBurst400 = "burst400"
	// BenchFrag2000: one operation is a 2000-byte data message from alice
	// to bob fragmented at max message size 400, including reassembly.
	// Any "fragSIZE" is accepted.
	BenchFrag2000 = "frag2000"
	// BenchSMP: one operation is a full SMP run (both sides succeed) in an
	// established session.
	BenchSMP = "smp"
	// BenchHeap: n session pairs are established (AKE plus one 11-byte
	// data message each way, which makes both sides rotate keys once);
	// BenchResult.HeapBytesPerPair is the growth of malloc's in-use
	// bytes (mallinfo2 uordblks+hblkhd) divided by n, counting both
	// sides. Timings are per pair.
	BenchHeap = "heap"
)

// Workloads returns the standard workloads in a sensible order.
func Workloads() []string {
	return []string{BenchAKE, BenchAlternating, BenchBurst100, BenchBurst400, BenchFrag2000, BenchSMP, BenchHeap}
}

// BenchResult is libotr's timing for one workload. Durations are per
// operation (see the Bench* constants for what one operation is).
type BenchResult struct {
	// Workload is the workload name.
	Workload string
	// N is the number of timed operations.
	N int
	// Op describes one operation.
	Op string
	// Median, Mean, Min and Max summarize the N per-operation times.
	Median, Mean, Min, Max time.Duration
	// HeapBytesPerPair is set by BenchHeap only: heap bytes per
	// established session pair (both sides together).
	HeapBytesPerPair float64
}

// String formats the result on one line.
func (r BenchResult) String() string {
	s := fmt.Sprintf("libotr %s: n=%d median=%v mean=%v min=%v max=%v (%s)",
		r.Workload, r.N, r.Median, r.Mean, r.Min, r.Max, r.Op)
	if r.HeapBytesPerPair > 0 {
		s += fmt.Sprintf(" heap=%.1f KiB/pair", r.HeapBytesPerPair/1024)
	}
	return s
}

// ReportMetrics adds r to b's output as custom metrics, so a Go benchmark
// can show libotr's figure next to its own: "libotr-ns/op" (the median),
// "libotr-mean-ns/op" (the mean, to set against a Go benchmark's ns/op)
// and, for BenchHeap, "libotr-B/pair".
func (r BenchResult) ReportMetrics(b *testing.B) {
	b.ReportMetric(float64(r.Median.Nanoseconds()), "libotr-ns/op")
	b.ReportMetric(float64(r.Mean.Nanoseconds()), "libotr-mean-ns/op")
	if r.HeapBytesPerPair > 0 {
		b.ReportMetric(r.HeapBytesPerPair, "libotr-B/pair")
	}
}

// RunBench builds the peer if needed and times libotr on workload with n
// operations (for BenchHeap, n session pairs). The peer generates two DSA
// keys first (typically well under a second; not timed).
func RunBench(ctx context.Context, workload string, n int) (BenchResult, error) {
	if n < 1 {
		return BenchResult{}, fmt.Errorf("libotrpeer: RunBench: n=%d, want at least 1", n)
	}
	if workload == "" || strings.ContainsAny(workload, " \t\n") || workload == "all" {
		return BenchResult{}, fmt.Errorf("libotrpeer: RunBench: bad workload %q", workload)
	}
	bin, err := Build()
	if err != nil {
		return BenchResult{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "bench", workload, strconv.Itoa(n))
	var stdout bytes.Buffer
	var stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	results, parseErr := parseBenchOutput(stdout.String())
	if runErr != nil {
		if ctx.Err() != nil {
			return BenchResult{}, fmt.Errorf("libotrpeer: bench %s: %w", workload, ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if parseErr != nil {
			msg = strings.TrimSpace(parseErr.Error() + "; " + msg)
		}
		return BenchResult{}, fmt.Errorf("libotrpeer: bench %s: %w: %s", workload, runErr, msg)
	}
	if parseErr != nil {
		return BenchResult{}, fmt.Errorf("libotrpeer: bench %s: %w", workload, parseErr)
	}
	if len(results) != 1 {
		return BenchResult{}, fmt.Errorf("libotrpeer: bench %s: got %d results, want 1", workload, len(results))
	}
	return results[0], nil
}

// parseBenchOutput parses "bench key=value..." lines up to "ok" or "err".
func parseBenchOutput(out string) ([]BenchResult, error) {
	var results []BenchResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ok":
			return results, nil
		case strings.HasPrefix(line, "err"):
			return results, fmt.Errorf("peer: %s", strings.TrimSpace(strings.TrimPrefix(line, "err")))
		case strings.HasPrefix(line, "bench "):
			r, err := parseBenchLine(line)
			if err != nil {
				return results, err
			}
			results = append(results, r)
		default:
			return results, fmt.Errorf("unexpected bench output %.80q", line)
		}
	}
	return results, fmt.Errorf("bench output ended without ok")
}

func parseBenchLine(line string) (BenchResult, error) {
	var r BenchResult
	kv := map[string]string{}
	for _, w := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return r, fmt.Errorf("malformed bench word %q", w)
		}
		kv[k] = v
	}
	r.Workload = kv["workload"]
	if op, err := hex.DecodeString(kv["op"]); err == nil {
		r.Op = string(op)
	}
	n, err := strconv.Atoi(kv["n"])
	if err != nil {
		return r, fmt.Errorf("bench n: %w", err)
	}
	r.N = n
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"median_ns", &r.Median}, {"mean_ns", &r.Mean}, {"min_ns", &r.Min}, {"max_ns", &r.Max}} {
		v, err := strconv.ParseInt(kv[f.key], 10, 64)
		if err != nil {
			return r, fmt.Errorf("bench %s: %w", f.key, err)
		}
		*f.dst = time.Duration(v)
	}
	if s, ok := kv["heap_bytes_per_pair"]; ok {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return r, fmt.Errorf("bench heap_bytes_per_pair: %w", err)
		}
		r.HeapBytesPerPair = v
	}
	return r, nil
}
