package libotrpeer

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// source is the C peer, compiled on demand by Build.
//
//go:embed csrc/peer.c
var source []byte

// cflags and libs are the compiler and linker arguments used by Build.
var (
	cflags = []string{"-std=gnu11", "-O2", "-Wall", "-Wextra"}
	libs   = []string{"-lotr", "-lgcrypt"}
)

// ErrUnavailable is wrapped by the error from Build when the peer cannot be
// built because a prerequisite is missing on this machine: no C compiler, or
// no libotr / libgcrypt development files (Debian: libotr5-dev,
// libgcrypt20-dev). Any other build failure is a bug and is not wrapped.
var ErrUnavailable = errors.New("libotrpeer: C compiler or libotr development files unavailable")

var built struct {
	sync.Mutex
	done bool
	path string
	err  error
}

// Build compiles the embedded C peer (once per process) and returns the path
// of the executable. Binaries are cached under
// os.UserCacheDir()/otrbnc-libotrpeer/<hash>/peer, where the hash covers the
// source, the compiler and its flags, so repeated test runs reuse them. The
// binary is compiled into a temporary file and renamed into place, which keeps
// concurrent builds from parallel test processes safe.
//
// The compiler is $CC if set, otherwise cc, otherwise gcc. When a prerequisite
// is missing the returned error wraps ErrUnavailable.
func Build() (string, error) {
	built.Lock()
	defer built.Unlock()
	if !built.done {
		built.path, built.err = build()
		built.done = true
	}
	return built.path, built.err
}

// Require returns the path of the C peer for use in a test or benchmark. If
// the peer cannot be built because libotr or a C compiler is missing it skips
// tb, except when the environment variable CI is "true": interop peers are
// mandatory in CI, so there it fails tb instead. Any other build error fails
// tb.
func Require(tb testing.TB) string {
	tb.Helper()
	return require(tb, Build)
}

func require(tb testing.TB, build func() (string, error)) string {
	tb.Helper()
	path, err := build()
	switch {
	case err == nil:
		return path
	case errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true":
		tb.Skipf("libotr peer unavailable (set CI=true to make this fatal): %v", err)
	default:
		tb.Fatalf("libotr peer: %v", err)
	}
	return ""
}

// compilerCommand returns the compiler program and any leading arguments.
func compilerCommand() (string, []string, error) {
	if cc := strings.Fields(os.Getenv("CC")); len(cc) > 0 {
		p, err := exec.LookPath(cc[0])
		if err != nil {
			return "", nil, fmt.Errorf("%w: $CC=%q: %w", ErrUnavailable, os.Getenv("CC"), err)
		}
		return p, cc[1:], nil
	}
	for _, name := range []string{"cc", "gcc"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil, nil
		}
	}
	return "", nil, fmt.Errorf("%w: no C compiler (cc or gcc) in $PATH", ErrUnavailable)
}

func cacheRoot() string {
	if d, err := os.UserCacheDir(); err == nil {
		root := filepath.Join(d, "otrbnc-libotrpeer")
		if os.MkdirAll(root, 0o755) == nil {
			return root
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("otrbnc-libotrpeer-%d", os.Getuid()))
}

func build() (string, error) {
	cc, ccArgs, err := compilerCommand()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(source)
	fmt.Fprintf(h, "\x00%s\x00%q\x00%q\x00%q", cc, ccArgs, cflags, libs)
	dir := filepath.Join(cacheRoot(), hex.EncodeToString(h.Sum(nil))[:24])
	bin := filepath.Join(dir, "peer")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("libotrpeer: creating cache directory: %w", err)
	}
	tmp, _, err := compile(cc, ccArgs, dir, nil)
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("libotrpeer: installing peer binary: %w", err)
	}
	return bin, nil
}

// compile builds the peer into a new temporary file in dir and returns its
// path together with the compiler's diagnostics (empty when clean).
func compile(cc string, ccArgs []string, dir string, extraFlags []string) (bin string, diagnostics string, err error) {
	src, err := os.CreateTemp(dir, "peer-*.c")
	if err != nil {
		return "", "", fmt.Errorf("libotrpeer: writing peer source: %w", err)
	}
	defer os.Remove(src.Name())
	if _, err := src.Write(source); err != nil {
		src.Close()
		return "", "", fmt.Errorf("libotrpeer: writing peer source: %w", err)
	}
	if err := src.Close(); err != nil {
		return "", "", fmt.Errorf("libotrpeer: writing peer source: %w", err)
	}
	out, err := os.CreateTemp(dir, "peer-*.tmp")
	if err != nil {
		return "", "", fmt.Errorf("libotrpeer: creating peer binary: %w", err)
	}
	out.Close()

	args := append(append(append([]string{}, ccArgs...), cflags...), extraFlags...)
	args = append(args, "-o", out.Name(), src.Name())
	args = append(args, libs...)
	cmd := exec.Command(cc, args...)
	diag, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(out.Name())
		if missingPrerequisite(diag) {
			return "", string(diag), fmt.Errorf("%w: %s", ErrUnavailable, bytes.TrimSpace(diag))
		}
		return "", string(diag), fmt.Errorf("libotrpeer: compiling peer.c: %w\n%s", err, diag)
	}
	if err := os.Chmod(out.Name(), 0o755); err != nil {
		os.Remove(out.Name())
		return "", string(diag), fmt.Errorf("libotrpeer: chmod peer binary: %w", err)
	}
	return out.Name(), string(diag), nil
}

// missingPrerequisite reports whether compiler output says that libotr or
// libgcrypt headers or libraries are not installed.
func missingPrerequisite(diag []byte) bool {
	s := string(diag)
	for _, lib := range []string{"-lotr", "-lgcrypt"} {
		if strings.Contains(s, "cannot find "+lib) {
			return true
		}
	}
	return strings.Contains(s, "No such file or directory") &&
		(strings.Contains(s, "libotr/") || strings.Contains(s, "gcrypt.h"))
}
