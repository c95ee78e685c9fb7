package platform

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	nobody := &Credential{User: "nobody", Group: "nogroup", UID: 65534, GID: 65534}
	all := Paths{
		Config:     "/etc/srp/config.json",
		CertCache:  "/var/srp/certs",
		ACMECA:     "/etc/srp/ca.pem",
		PIDFileDir: "/var/run/srp",
		Binary:     "/usr/local/bin/srp",
	}
	acme := all
	acme.ACME = true
	acmeUser := acme
	acmeUser.User = nobody
	systemRoots := acme
	systemRoots.ACMECA = ""
	fleet := acme
	fleet.Fleet, fleet.EtcdCA, fleet.EtcdCert, fleet.EtcdKey = true, "/etc/srp/etcd-ca.pem", "/etc/srp/etcd.pem", "/etc/srp/etcd-key.pem"
	fleetSystemRoots := fleet
	fleetSystemRoots.EtcdCA, fleetSystemRoots.EtcdCert, fleetSystemRoots.EtcdKey = "", "", ""

	tests := []struct {
		name     string
		role     Role
		p        Paths
		promises string
		unveil   []string // "path:perm"
	}{
		{"plain HTTP worker", Worker, all, "stdio inet", nil},
		{"ACME worker", Worker, acme, "stdio inet dns rpath wpath cpath",
			[]string{"/var/srp/certs:rwc", "/etc/srp/ca.pem:r"}},
		{"ACME worker with system roots", Worker, systemRoots, "stdio inet dns rpath wpath cpath",
			[]string{"/var/srp/certs:rwc"}},
		{"fleet worker", Worker, fleet, "stdio inet dns rpath wpath cpath",
			[]string{"/var/srp/certs:rwc", "/etc/srp/ca.pem:r", "/etc/srp/etcd-ca.pem:r", "/etc/srp/etcd.pem:r", "/etc/srp/etcd-key.pem:r"}},
		{"fleet worker trusting the system roots for etcd", Worker, fleetSystemRoots, "stdio inet dns rpath wpath cpath",
			[]string{"/var/srp/certs:rwc", "/etc/srp/ca.pem:r"}},
		{"fleet supervisor", Supervisor, fleet, "stdio rpath wpath cpath fattr inet unix dns proc exec",
			[]string{"/etc/srp/config.json:r", "/var/srp/certs:rwc", "/var/run/srp:rwc", "/usr/local/bin/srp:x", "/dev/null:rw"}},
		{"plain HTTP supervisor", Supervisor, all, "stdio rpath wpath cpath fattr inet unix dns proc exec",
			[]string{"/etc/srp/config.json:r", "/var/run/srp:rwc", "/usr/local/bin/srp:x", "/dev/null:rw"}},
		{"ACME supervisor", Supervisor, acme, "stdio rpath wpath cpath fattr inet unix dns proc exec",
			[]string{"/etc/srp/config.json:r", "/var/srp/certs:rwc", "/var/run/srp:rwc", "/usr/local/bin/srp:x", "/dev/null:rw"}},
		{"supervisor running workers as another user", Supervisor, acmeUser, "stdio rpath wpath cpath fattr inet unix dns proc exec id",
			[]string{"/etc/srp/config.json:r", "/var/srp/certs:rwc", "/var/run/srp:rwc", "/usr/local/bin/srp:x", "/dev/null:rw"}},
		{"supervisor with an access log file", Supervisor, Paths{Config: "c.json", Binary: "/srp", AccessLog: "/var/log/srp/access.log"}, "stdio rpath wpath cpath fattr inet unix dns proc exec",
			[]string{"c.json:r", "/var/log/srp/access.log:wc", "/srp:x", "/dev/null:rw"}},
		{"supervisor without pidfile", Supervisor, Paths{Config: "c.json", Binary: "/srp"}, "stdio rpath wpath cpath fattr inet unix dns proc exec",
			[]string{"c.json:r", "/srp:x", "/dev/null:rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			promises, unveil := Rules(tt.role, tt.p)
			if promises != tt.promises {
				t.Errorf("promises = %q, want %q", promises, tt.promises)
			}
			var got []string
			for _, u := range unveil {
				got = append(got, u.Path+":"+u.Perm)
				if u.Why == "" {
					t.Errorf("%s has no reason", u.Path)
				}
				if strings.Trim(u.Perm, "rwcx") != "" || u.Perm == "" {
					t.Errorf("%s: bad permissions %q", u.Path, u.Perm)
				}
			}
			if !reflect.DeepEqual(got, tt.unveil) {
				t.Errorf("unveil = %q, want %q", got, tt.unveil)
			}
		})
	}
}

// A promise the worker does not need must never creep in: each one widens
// what a compromised worker can do.
func TestWorkerPromisesAreMinimal(t *testing.T) {
	for _, acme := range []bool{false, true} {
		promises, _ := Rules(Worker, Paths{ACME: acme, CertCache: "c"})
		for _, p := range strings.Fields(promises) {
			switch p {
			case "proc", "exec", "unix", "id", "fattr", "chown", "sendfd", "recvfd", "getpw", "tty", "tmppath":
				t.Errorf("ACME=%v: worker pledges %q", acme, p)
			}
		}
	}
}

func TestLockdownUnknownRole(t *testing.T) {
	if err := Lockdown(Role(0), Paths{}, nil); err == nil {
		t.Fatal("Lockdown(Role(0)) succeeded")
	}
}

func TestPrepareCreatesCache(t *testing.T) {
	dir := t.TempDir() + "/certs"
	if err := prepare(Worker, Paths{ACME: true, CertCache: dir, ACMECA: "unused.pem"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache %v, want a 0700 directory", st.Mode())
	}
	// A plain HTTP role creates nothing.
	other := t.TempDir() + "/unused"
	if err := prepare(Supervisor, Paths{CertCache: other}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("plain HTTP supervisor created %s: %v", other, err)
	}
}
