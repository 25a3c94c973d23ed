package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxIdentifierLength is the longest name PostgreSQL keeps: it silently cuts
// longer identifiers to this many bytes.
const MaxIdentifierLength = 63

// ErrOwnedElsewhere is returned for a database that exists and belongs to
// another role: the operator never takes another role's data.
var ErrOwnedElsewhere = errors.New("the database exists and another role owns it")

// AppDatabaseName is the database of one app of a coop: the coop's database
// name, '_', and the app's name with '-' as '_'. A name longer than
// PostgreSQL keeps is cut and ends with '_' and 8 hex digits of the full
// name's SHA-256, so it stays the same for the same coop and app.
func AppDatabaseName(coopDatabase, app string) string {
	return fitIdentifier(coopDatabase + "_" + strings.ReplaceAll(app, "-", "_"))
}

// fitIdentifier cuts a name longer than PostgreSQL keeps, ending it with
// '_' and 8 hex digits of the full name's SHA-256.
func fitIdentifier(name string) string {
	if len(name) <= MaxIdentifierLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "_" + hex.EncodeToString(sum[:4])
	return name[:MaxIdentifierLength-len(suffix)] + suffix
}

// AppDatabase is the database of one of a coop's apps. It has no role of its
// own: the coop's role owns it, so the app uses the coop's credentials.
type AppDatabase struct {
	// Name of the database.
	Name string
	// Owner is the coop's role.
	Owner string
}

// AppObservation is what the server holds of an app's database.
type AppObservation struct {
	Exists bool
	Owner  string
	// PublicConnect is true while PUBLIC may connect to the database.
	PublicConnect bool
}

// UpToDate says whether the observation matches db.
func (o AppObservation) UpToDate(db AppDatabase) bool {
	return o.Exists && o.Owner == db.Owner && !o.PublicConnect
}

// ObserveAppDatabases reads what the server holds of the named databases, in
// one read-only query. Databases that do not exist are absent from the map.
func (s *Server) ObserveAppDatabases(ctx context.Context, names []string) (map[string]AppObservation, error) {
	out := map[string]AppObservation{}
	if len(names) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `
SELECT d.datname::text, pg_get_userbyid(d.datdba)::text,
  d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT')
FROM pg_database d WHERE d.datname = ANY($1::text[])`, names)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		o := AppObservation{Exists: true}
		if err := rows.Scan(&name, &o.Owner, &o.PublicConnect); err != nil {
			return nil, err
		}
		out[name] = o
	}
	return out, rows.Err()
}

// EnsureAppDatabase makes the server hold db as observed: a database the
// coop's role owns that no one else may connect to. The coop's role must
// exist and the admin be a member of it (see Ensure). A database of that
// name that another role owns is left alone: ErrOwnedElsewhere.
func (s *Server) EnsureAppDatabase(ctx context.Context, db AppDatabase, o AppObservation) error {
	if o.Exists && o.Owner != db.Owner {
		return ErrOwnedElsewhere
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	name := pgx.Identifier{db.Name}.Sanitize()
	if !o.Exists {
		// "Already exists" is not tolerated: the name may have been taken
		// by another role at the same moment, and the next observation says so.
		if err := s.exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, pgx.Identifier{db.Owner}.Sanitize())); err != nil {
			return fmt.Errorf("creating the database: %w", err)
		}
		o.PublicConnect = true
	}
	if o.PublicConnect {
		if err := s.exec(ctx, fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", name)); err != nil {
			return fmt.Errorf("revoking PUBLIC's access: %w", err)
		}
	}
	return nil
}
