package platform

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// landlockMaxABI is the newest Landlock ABI whose rights this file knows; a
// newer kernel is asked for this ABI's set, which it still enforces.
const landlockMaxABI = 7

// rulesetAttr is struct landlock_ruleset_attr up to the scoped field (ABI 6);
// older kernels accept it as long as the fields they lack are zero.
type rulesetAttr struct {
	handledFS     uint64
	handledNet    uint64
	handledScoped uint64
}

// landlockABI returns the ABI srp applies: the kernel's, capped at what
// this file knows. The error says why there is none.
func landlockABI() (int, error) {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch e {
	case 0:
		return min(int(v), landlockMaxABI), nil
	case unix.ENOSYS:
		return 0, errors.New("kernel built without Landlock")
	case unix.EOPNOTSUPP:
		return 0, errors.New("landlock disabled at boot (not in the lsm= list)")
	}
	return 0, fmt.Errorf("landlock_create_ruleset: %w", e)
}

// handledFS is every filesystem right of an ABI: what is not granted by a
// rule is denied.
func handledFS(abi int) uint64 {
	r := uint64(unix.LANDLOCK_ACCESS_FS_MAKE_SYM<<1 - 1) // ABI 1: EXECUTE through MAKE_SYM
	if abi >= 2 {
		r |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		r |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		r |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return r
}

// fileRights are the rights a rule on a file (not a directory) may carry.
const fileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
	unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV

// access translates unveil permissions into Landlock rights. "c" on a file
// grants nothing: Landlock cannot allow creating one name, only names in a
// directory.
func access(perm string, dir bool, abi int) uint64 {
	var a uint64
	for _, c := range perm {
		switch c {
		case 'r':
			a |= unix.LANDLOCK_ACCESS_FS_READ_FILE
			if dir {
				a |= unix.LANDLOCK_ACCESS_FS_READ_DIR
			}
		case 'w':
			a |= unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
		case 'c':
			a |= unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
				unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR
		case 'x':
			a |= unix.LANDLOCK_ACCESS_FS_EXECUTE
		}
	}
	if !dir {
		a &= fileRights
	}
	return a & handledFS(abi)
}

// buildRuleset returns a ruleset fd that grants rules and denies every other
// filesystem access, binding TCP ports (ABI 4: a worker only inherits
// listeners) and, from ABI 6, signals and abstract unix sockets outside the
// domain. Paths that do not exist grant nothing and are skipped.
func buildRuleset(rules []Unveil, abi int) (int, error) {
	attr := rulesetAttr{handledFS: handledFS(abi)}
	if abi >= 4 {
		attr.handledNet = unix.LANDLOCK_ACCESS_NET_BIND_TCP
	}
	if abi >= 6 {
		attr.handledScoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return -1, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	for _, r := range rules {
		if err := addRule(int(fd), r, abi); err != nil {
			unix.Close(int(fd))
			return -1, err
		}
	}
	return int(fd), nil
}

func addRule(ruleset int, r Unveil, abi int) error {
	// O_PATH follows symlinks, so the rule lands on the file actually read.
	fd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("landlock rule %s: %w", r.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock rule %s: %w", r.Path, err)
	}
	a := access(r.Perm, st.Mode&unix.S_IFMT == unix.S_IFDIR, abi)
	if a == 0 {
		return nil
	}
	attr := unix.LandlockPathBeneathAttr{Allowed_access: a, Parent_fd: int32(fd)}
	_, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("landlock rule %s %q: %w", r.Path, r.Perm, e)
	}
	return nil
}

// restrictThread sets no_new_privs on the calling OS thread and, if abi > 0,
// puts it in a Landlock domain of rules. Only this thread is affected, and
// whatever it forks and execs.
func restrictThread(rules []Unveil, abi int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if abi == 0 {
		return nil
	}
	fd, err := buildRuleset(rules, abi)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return nil
}

// errThreads says why a process cannot restrict all its threads itself.
var errThreads = errors.New("this binary uses cgo, so its threads cannot all be restricted at once")

// restrictProcess sets no_new_privs and a Landlock domain of rules on every
// thread. Go can do that only in binaries without cgo; with cgo it returns
// errThreads and changes nothing.
func restrictProcess(rules []Unveil, abi int) error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == unix.ENOTSUP {
			return errThreads
		}
		return fmt.Errorf("no_new_privs: %w", e)
	}
	fd, err := buildRuleset(rules, abi)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return nil
}

// inDomain reports whether this thread is in a Landlock domain of srp's:
// no rule ever grants "/", so listing it is denied only inside one.
func inDomain() bool {
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return errors.Is(err, unix.EACCES)
}

// Files Go's resolver reads on Linux; pledge's dns promise covers them on OpenBSD.
var resolverFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf"}

// System roots as crypto/x509 looks for them on Linux.
var (
	rootFiles = []string{
		"/etc/ssl/certs/ca-certificates.crt",
		"/etc/pki/tls/certs/ca-bundle.crt",
		"/etc/ssl/ca-bundle.pem",
		"/etc/pki/tls/cacert.pem",
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
		"/etc/ssl/cert.pem",
	}
	rootDirs = []string{"/etc/ssl/certs", "/etc/pki/tls/certs"}
)

// lockdownRules is what a Linux worker may touch once locked down: the
// table's paths and, in HTTPS mode, the resolver's files.
func lockdownRules(p Paths) []Unveil {
	_, rules := Rules(Worker, p)
	if p.ACME {
		for _, f := range resolverFiles {
			rules = append(rules, Unveil{Path: f, Perm: "r", Why: "resolving the ACME server"})
		}
	}
	return rules
}

// execRules adds to lockdownRules what a worker needs between exec and
// Lockdown when its domain starts at exec: its binary and shared libraries,
// the time zone, and in HTTPS mode the system roots, all read-only.
func execRules(p Paths) []Unveil {
	rules := lockdownRules(p)
	add := func(path, perm, why string) {
		rules = append(rules, Unveil{Path: path, Perm: perm, Why: why})
	}
	add("/proc/self/exe", "rx", "the srp binary, executed as the worker")
	for _, f := range mappedExecutables() {
		add(f, "rx", "loaded by the dynamic linker at exec")
	}
	add("/etc/ld.so.cache", "r", "where the dynamic linker finds libraries")
	add("/etc/localtime", "r", "time zone of log timestamps")
	if p.needsSystemRoots() {
		files, dirs := rootFiles, rootDirs
		if f := os.Getenv("SSL_CERT_FILE"); f != "" {
			files = []string{f}
		}
		if d := os.Getenv("SSL_CERT_DIR"); d != "" {
			dirs = filepath.SplitList(d)
		}
		for _, f := range files {
			add(f, "r", "system roots for the ACME server or etcd")
		}
		for _, d := range dirs {
			add(d, "r", "system roots for the ACME server or etcd")
		}
	}
	return rules
}

// mappedExecutables lists the files mapped executable into this process: the
// binary, the dynamic linker and the libraries it loaded. The worker is the
// same binary, so at exec it needs exactly these.
func mappedExecutables() []string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var files []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.Contains(fields[1], "x") {
			continue
		}
		path := strings.Join(fields[5:], " ")
		if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, " (deleted)") || seen[path] {
			continue
		}
		seen[path] = true
		files = append(files, path)
	}
	return files
}
