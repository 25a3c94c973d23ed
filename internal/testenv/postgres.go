package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a real PostgreSQL server from the machine's packages, in a
// temp dir on a free loopback port, with every DDL statement logged.
type Postgres struct {
	Dir  string
	Host string
	Port int
	// Password of the superuser "postgres".
	Password string
	// LogPath is the server's log, where DDL statements are logged.
	LogPath string

	bin  string
	cred *syscall.Credential
}

// PostgresBinDir finds the newest installed PostgreSQL's bin dir.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("PostgreSQL is not installed (no initdb); `make test` installs Debian's postgresql package")
	}
	sort.Slice(found, func(i, j int) bool { return versionOf(found[i]) < versionOf(found[j]) })
	return found[len(found)-1], nil
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// StartPostgres initialises and starts a server in dir (a new temp dir when
// empty).
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cooperator-postgres-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	password, err := randomToken()
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: dir, Host: "127.0.0.1", Port: port, Password: password, LogPath: filepath.Join(dir, "postgres.log"), bin: bin}
	// initdb refuses to run as root: run the server as the postgres user.
	if os.Geteuid() == 0 {
		if p.cred, err = credentialOf("postgres"); err != nil {
			return nil, fmt.Errorf("running PostgreSQL as root needs a postgres user: %w", err)
		}
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, err
		}
		_ = os.Chmod(dir, 0o700)
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if p.cred != nil {
		_ = os.Chown(pwfile, int(p.cred.Uid), int(p.cred.Gid))
	}
	if out, err := p.run("initdb", "-D", p.dataDir(), "-U", "postgres", "--pwfile="+pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }

// Start starts the server (again, after Stop) on its port.
func (p *Postgres) Start(ctx context.Context) error {
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1",
		fmt.Sprintf("-c port=%d", p.Port),
		"-c unix_socket_directories=" + p.Dir,
		"-c log_statement=ddl",
		"-c log_line_prefix='%a '",
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c max_connections=200",
	}, " ")
	if out, err := p.run("pg_ctl", "-D", p.dataDir(), "-l", p.LogPath, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(p.LogPath)
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server at once, ending open connections.
func (p *Postgres) Stop() error {
	if out, err := p.run("pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Remove stops the server and deletes its files.
func (p *Postgres) Remove() {
	_ = p.Stop()
	_ = os.RemoveAll(p.Dir)
}

// Superuser connects as the superuser to a database.
func (p *Postgres) Superuser(ctx context.Context, database string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, p.URL("postgres", p.Password, database))
}

// URL is a connection URL to this server.
func (p *Postgres) URL(user, password, database string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable&connect_timeout=5", user, password, p.Host, p.Port, database)
}

// CreateAdmin makes a role with CREATEROLE and CREATEDB, not a superuser,
// as a host's sysadmin would for the operator.
func (p *Postgres) CreateAdmin(ctx context.Context, name, password string) error {
	conn, err := p.Superuser(ctx, "postgres")
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE CREATEDB PASSWORD '%s'",
		pgx.Identifier{name}.Sanitize(), strings.ReplaceAll(password, "'", "''")))
	return err
}

// DDLCount counts the DDL statements the server has logged from clients
// whose application_name is app.
func (p *Postgres) DDLCount(app string) (int, error) {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, app+" ") && strings.Contains(line, "statement: ") {
			n++
		}
	}
	return n, nil
}

func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd.CombinedOutput()
}

func credentialOf(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// MemoryPSS is the proportional set size, in bytes, of the server's
// processes: the postmaster and its children. Shared memory counts once.
func (p *Postgres) MemoryPSS() (int64, error) {
	pidData, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	master, err := strconv.Atoi(strings.SplitN(string(pidData), "\n", 2)[0])
	if err != nil {
		return 0, err
	}
	total, err := pss(master)
	if err != nil {
		return 0, err
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range procs {
		data, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses: state, ppid.
		rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(master) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
			if n, err := pss(pid); err == nil {
				total += n
			}
		}
	}
	return total, nil
}

func pss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "Pss:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no Pss in smaps_rollup")
}
