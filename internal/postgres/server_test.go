package postgres

import (
	"context"
	"errors"
	"slices"
	"testing"

	"cooperator.dev/cooperator/internal/testenv"
)

// startServer runs a real PostgreSQL with an admin role like a host's: CREATEROLE
// and CREATEDB, no superuser.
func startServer(t *testing.T) (*testenv.Postgres, *Server) {
	t.Helper()
	ctx := context.Background()
	pg, err := testenv.StartPostgres(ctx, "")
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Remove)
	if err := pg.CreateAdmin(ctx, "cooperator", "admin-pw"); err != nil {
		t.Fatal(err)
	}
	s, err := Connect(ServerConfig{Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", User: "cooperator", Password: "admin-pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return pg, s
}

func ensureCoop(t *testing.T, s *Server, name string) {
	t.Helper()
	ctx := context.Background()
	db := Database{Name: name, ConnectionLimit: 5}
	o, err := s.Observe(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(ctx, db, o, "pw-"+name); err != nil {
		t.Fatal(err)
	}
}

func TestAppDatabasesAreOwnedByTheCoopsRoleAndDroppedWithIt(t *testing.T) {
	pg, s := startServer(t)
	ctx := context.Background()
	ensureCoop(t, s, "coop_a")
	ensureCoop(t, s, "coop_c")

	app := AppDatabase{Name: AppDatabaseName("coop_a", "b"), Owner: "coop_a"}
	observed, err := s.ObserveAppDatabases(ctx, []string{app.Name})
	if err != nil || len(observed) != 0 {
		t.Fatalf("before: %v, %v; want nothing", observed, err)
	}
	if err := s.EnsureAppDatabase(ctx, app, observed[app.Name]); err != nil {
		t.Fatal(err)
	}
	observed, err = s.ObserveAppDatabases(ctx, []string{app.Name, "coop_a_missing"})
	if err != nil {
		t.Fatal(err)
	}
	if o := observed[app.Name]; !o.UpToDate(app) || o.PublicConnect {
		t.Errorf("after: %+v, want it owned by coop_a with PUBLIC's CONNECT revoked", o)
	}
	if _, ok := observed["coop_a_missing"]; ok {
		t.Errorf("a missing database was observed")
	}

	// Another coop whose database bears the same name cannot take it.
	taken := AppDatabase{Name: app.Name, Owner: "coop_c"}
	ddl, _ := pg.DDLCount("cooperator")
	if err := s.EnsureAppDatabase(ctx, taken, observed[app.Name]); !errors.Is(err, ErrOwnedElsewhere) {
		t.Errorf("ensuring another role's database: %v, want ErrOwnedElsewhere", err)
	}
	if after, _ := pg.DDLCount("cooperator"); after != ddl {
		t.Errorf("a refused database ran %d DDL statements", after-ddl)
	}

	if _, databases, err := s.Info(ctx); err != nil || databases != 2 {
		t.Errorf("Info counts %d databases (%v), want the 2 coops' and not the app's", databases, err)
	}

	dropped, err := s.Drop(ctx, Database{Name: "coop_a"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dropped, []string{"coop_a", "coop_a_b"}) {
		t.Errorf("dropped %v, want the coop's and its app's databases", dropped)
	}
	owned, err := s.OwnedDatabases(ctx, "coop_c")
	if err != nil || !slices.Equal(owned, []string{"coop_c"}) {
		t.Errorf("coop_c owns %v (%v); another coop's database must stay", owned, err)
	}
	if owned, _ := s.OwnedDatabases(ctx, "coop_a"); len(owned) != 0 {
		t.Errorf("coop_a still owns %v", owned)
	}
}
