// Package postgres administers coop roles and databases on shared
// PostgreSQL servers. Every call is idempotent and bounded in time, and an
// unchanged database is only read, never written.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// callTimeout bounds every call, so that a server that hangs cannot hold a
// reconcile worker.
const callTimeout = 10 * time.Second

// ServerConfig is how the operator reaches a server as its admin role.
type ServerConfig struct {
	Host     string
	Port     int32
	SSLMode  string
	User     string
	Password string
}

func (c ServerConfig) connString(database string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(c.User, c.Password),
		Host:   net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))),
		Path:   "/" + database,
	}
	q := url.Values{}
	q.Set("sslmode", c.SSLMode)
	q.Set("connect_timeout", "5")
	q.Set("application_name", "cooperator")
	u.RawQuery = q.Encode()
	return u.String()
}

// Database is one coop's role and database.
type Database struct {
	// Name is the database's and the role's name.
	Name string
	// ConnectionLimit caps the role's connections.
	ConnectionLimit int32
}

// Observation is what the server holds of a coop's database.
type Observation struct {
	RoleExists      bool
	ConnectionLimit int32
	// Privileged is true when the role has SUPERUSER, CREATEDB, CREATEROLE,
	// REPLICATION or BYPASSRLS.
	Privileged     bool
	DatabaseExists bool
	Owner          string
	// PublicConnect is true while PUBLIC may connect to the database.
	PublicConnect bool
	// AdminIsMember is true when the admin role may act as the coop's role.
	AdminIsMember bool
}

// UpToDate says whether the observation matches db.
func (o Observation) UpToDate(db Database) bool {
	return o.RoleExists && o.ConnectionLimit == db.ConnectionLimit && !o.Privileged &&
		o.DatabaseExists && o.Owner == db.Name && !o.PublicConnect && o.AdminIsMember
}

// Server is an admin connection pool to one server.
type Server struct {
	config ServerConfig
	pool   *pgxpool.Pool
}

// Connect opens a small pool to the server. It does not connect until used.
func Connect(cfg ServerConfig) (*Server, error) {
	pc, err := pgxpool.ParseConfig(cfg.connString("postgres"))
	if err != nil {
		return nil, fmt.Errorf("invalid server address: %w", errors.Unwrap(err))
	}
	pc.MaxConns = 4
	pc.MinConns = 0
	pc.MaxConnIdleTime = 2 * time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, err
	}
	return &Server{config: cfg, pool: pool}, nil
}

// Close ends the pool's connections.
func (s *Server) Close() { s.pool.Close() }

// Info is the server's version and how many coop databases it holds. A
// coop's database is owned by the role of its own name; its apps' databases,
// owned by the same role, are not counted.
func (s *Server) Info(ctx context.Context) (version string, databases int32, err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err = s.pool.QueryRow(ctx,
		`SELECT current_setting('server_version'),
  (SELECT count(*) FROM pg_database WHERE datname LIKE 'coop\_%' AND datname = pg_get_userbyid(datdba))::int`,
	).Scan(&version, &databases)
	return version, databases, err
}

// Observe reads what the server holds of db, in one read-only query.
func (s *Server) Observe(ctx context.Context, db Database) (Observation, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var o Observation
	err := s.pool.QueryRow(ctx, `
SELECT
  r.rolname IS NOT NULL,
  coalesce(r.rolconnlimit, 0),
  coalesce(r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls, false),
  d.datname IS NOT NULL,
  coalesce(pg_get_userbyid(d.datdba)::text, ''),
  d.datname IS NOT NULL AND (d.datacl IS NULL OR EXISTS (
    SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT')),
  r.rolname IS NOT NULL AND pg_has_role(current_user, r.oid, 'MEMBER')
FROM (SELECT $1::name AS name) want
LEFT JOIN pg_roles r ON r.rolname = want.name
LEFT JOIN pg_database d ON d.datname = want.name`, db.Name).
		Scan(&o.RoleExists, &o.ConnectionLimit, &o.Privileged, &o.DatabaseExists, &o.Owner, &o.PublicConnect, &o.AdminIsMember)
	return o, err
}

// Ensure makes the server hold db as observed: a login role with no
// privileges beyond its own database, given password if it is created, and
// a database it owns that no one else may connect to. It runs only the
// statements that o shows are missing, and each tolerates having been run
// before, so a retry after a crash is safe.
func (s *Server) Ensure(ctx context.Context, db Database, o Observation, password string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	name := pgx.Identifier{db.Name}.Sanitize()
	if !o.RoleExists {
		verifier, err := newVerifier(password)
		if err != nil {
			return err
		}
		stmt := fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d PASSWORD %s",
			name, db.ConnectionLimit, quoteLiteral(verifier))
		if err := s.exec(ctx, stmt, "42710"); err != nil {
			return fmt.Errorf("creating the role: %w", err)
		}
	} else if o.ConnectionLimit != db.ConnectionLimit || o.Privileged {
		stmt := fmt.Sprintf("ALTER ROLE %s NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT %d", name, db.ConnectionLimit)
		if err := s.exec(ctx, stmt); err != nil {
			return fmt.Errorf("altering the role: %w", err)
		}
	}
	if !o.AdminIsMember {
		// A CREATEROLE admin must be a member of the role to create a database it owns.
		if err := s.exec(ctx, fmt.Sprintf("GRANT %s TO CURRENT_USER", name)); err != nil {
			return fmt.Errorf("granting the role to the admin: %w", err)
		}
	}
	if !o.DatabaseExists {
		if err := s.exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, name), "42P04"); err != nil {
			return fmt.Errorf("creating the database: %w", err)
		}
		o.PublicConnect = true
	} else if o.Owner != db.Name {
		if err := s.exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", name, name)); err != nil {
			return fmt.Errorf("changing the database's owner: %w", err)
		}
	}
	if o.PublicConnect {
		if err := s.exec(ctx, fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", name)); err != nil {
			return fmt.Errorf("revoking PUBLIC's access: %w", err)
		}
	}
	return nil
}

// SetPassword gives the role a new password.
func (s *Server) SetPassword(ctx context.Context, db Database, password string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	verifier, err := newVerifier(password)
	if err != nil {
		return err
	}
	if err := s.exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD %s", pgx.Identifier{db.Name}.Sanitize(), quoteLiteral(verifier))); err != nil {
		return fmt.Errorf("setting the password: %w", err)
	}
	return nil
}

// EnsureExtensions creates extensions in a database as the role that owns
// it, so that trusted extensions need no superuser; extensions the server
// provides otherwise (for example from template1) already exist and are left
// alone.
func (s *Server) EnsureExtensions(ctx context.Context, database, owner string, extensions []string) error {
	if len(extensions) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.config.connString(database))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var missing []string
	rows, err := conn.Query(ctx, `SELECT e FROM unnest($1::text[]) e WHERE e NOT IN (SELECT extname FROM pg_extension)`, extensions)
	if err != nil {
		return err
	}
	missing, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(missing) == 0 {
		return err
	}
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{owner}.Sanitize()); err != nil {
		return err
	}
	for _, ext := range missing {
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{ext}.Sanitize()); err != nil {
			return fmt.Errorf("creating extension %s: %w", ext, err)
		}
	}
	return nil
}

// Drop removes every database db's role owns (db and its apps'), then the
// role, and returns the names of the databases it dropped. A database of
// db's name that another role owns is not this coop's, and stays.
// Connections still open are ended first. Each statement has its own time
// bound, so that a coop with many apps is not cut short.
func (s *Server) Drop(ctx context.Context, db Database) ([]string, error) {
	owned, err := s.OwnedDatabases(ctx, db.Name)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, name := range owned {
		if err := s.execBounded(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
			return dropped, fmt.Errorf("dropping database %s: %w", name, err)
		}
		dropped = append(dropped, name)
	}
	if err := s.execBounded(ctx, fmt.Sprintf("DROP ROLE IF EXISTS %s", pgx.Identifier{db.Name}.Sanitize())); err != nil {
		return dropped, fmt.Errorf("dropping the role: %w", err)
	}
	return dropped, nil
}

// OwnedDatabases are the databases a role owns, by name.
func (s *Server) OwnedDatabases(ctx context.Context, role string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx,
		`SELECT datname::text FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1) ORDER BY datname`, role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *Server) execBounded(ctx context.Context, stmt string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return s.exec(ctx, stmt)
}

// exec runs one statement; the SQLSTATEs in tolerate mean "already done".
func (s *Server) exec(ctx context.Context, stmt string, tolerate ...string) error {
	_, err := s.pool.Exec(ctx, stmt)
	if err != nil && slices.Contains(tolerate, sqlState(err)) {
		return nil
	}
	return err
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Servers keeps one admin pool per DatabaseServer, replaced when its
// address or credentials change.
type Servers struct {
	mu      sync.Mutex
	servers map[string]*Server
}

// Get returns the pool for the named server, opening a new one when cfg
// differs from the one in use.
func (r *Servers) Get(name string, cfg ServerConfig) (*Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.servers[name]; ok {
		if s.config == cfg {
			return s, nil
		}
		s.Close()
		delete(r.servers, name)
	}
	s, err := Connect(cfg)
	if err != nil {
		return nil, err
	}
	if r.servers == nil {
		r.servers = map[string]*Server{}
	}
	r.servers[name] = s
	return s, nil
}

// Lookup returns the pool of a server that Get has opened.
func (r *Servers) Lookup(name string) (*Server, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.servers[name]
	return s, ok
}

// CloseAll closes every pool, when the operator stops. It does not wait:
// a pool waits for its connections to come back, and a reconcile still
// draining must not hold up the operator's shutdown.
func (r *Servers) CloseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, s := range r.servers {
		go s.Close()
		delete(r.servers, name)
	}
}

// Forget closes and drops the pool of a server that is gone.
func (r *Servers) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.servers[name]; ok {
		s.Close()
		delete(r.servers, name)
	}
}
