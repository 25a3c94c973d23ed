// Command localcluster runs the local control plane of internal/testenv in
// the foreground until it is told to stop. `make cluster` and `make demo`
// start it in the background.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/testenv"
)

func main() {
	dir := flag.String("dir", ".local/cluster", "Folder for the cluster's data, certificates and logs; emptied at start.")
	kubeconfig := flag.String("kubeconfig", ".local/kubeconfig", "Where to write the admin kubeconfig.")
	nodes := flag.Int("nodes", 2, "How many fake nodes to create.")
	withPostgres := flag.Bool("postgres", true, "Also start a PostgreSQL server and an S3 server, and write a DatabaseServer and a BackupStore for them to <dir>/../database-server.yaml and backup-store.yaml.")
	flag.Parse()

	if err := run(*dir, *kubeconfig, *nodes, *withPostgres); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir, kubeconfig string, nodes int, withPostgres bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	_ = os.Remove(kubeconfig)
	env, err := testenv.Start(ctx, testenv.Options{Dir: dir, Nodes: nodes})
	if err != nil {
		return err
	}
	defer env.Stop()

	if withPostgres {
		pg, err := testenv.StartPostgres(ctx, filepath.Join(dir, "postgres"))
		if err != nil {
			return err
		}
		defer pg.Stop() //nolint:errcheck // best effort at exit
		if err := writeDatabaseServer(ctx, pg, filepath.Join(filepath.Dir(dir), "database-server.yaml")); err != nil {
			return err
		}
		fmt.Printf("PostgreSQL is up on %s:%d (log %s)\n", pg.Host, pg.Port, pg.LogPath)

		s3, err := testenv.StartS3(ctx, "")
		if err != nil {
			return err
		}
		defer s3.Remove()
		if err := s3.CreateBucket(ctx, "coop-backups"); err != nil {
			return err
		}
		if err := writeBackupStore(s3, filepath.Join(filepath.Dir(dir), "backup-store.yaml")); err != nil {
			return err
		}
		fmt.Printf("S3 is up on %s (bucket coop-backups)\n", s3.Endpoint)
	}

	data, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		return err
	}
	// Written last: its presence tells `make cluster` that the cluster is up.
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("Local control plane is up: %s (logs in %s)\n", env.Config.Host, dir)
	<-ctx.Done()
	fmt.Println("Stopping the local control plane")
	return nil
}

// writeDatabaseServer makes the operator's admin role on pg and writes the
// Secret and DatabaseServer a sysadmin would apply for it.
func writeDatabaseServer(ctx context.Context, pg *testenv.Postgres, path string) error {
	password, err := postgres.NewPassword()
	if err != nil {
		return err
	}
	if err := pg.CreateAdmin(ctx, "cooperator", password); err != nil {
		return err
	}
	manifest := fmt.Sprintf(`# The local PostgreSQL server, for the operator to place coop databases on.
apiVersion: v1
kind: Namespace
metadata:
  name: cooperator-system
---
apiVersion: v1
kind: Secret
metadata:
  name: local-postgres-admin
  namespace: cooperator-system
stringData:
  username: cooperator
  password: %q
---
apiVersion: cooperator.dev/v1alpha1
kind: DatabaseServer
metadata:
  name: local
spec:
  host: %s
  port: %d
  sslMode: disable
  adminSecretRef:
    name: local-postgres-admin
    namespace: cooperator-system
  maxDatabases: 500
  extensions: [pg_trgm, citext, unaccent]
`, password, pg.Host, pg.Port)
	return os.WriteFile(path, []byte(manifest), 0o600)
}

// writeBackupStore writes the Secret and BackupStore a sysadmin would apply
// for the local S3 server. It is named as the sample plans' store.
func writeBackupStore(s3 *testenv.S3, path string) error {
	manifest := fmt.Sprintf(`# The local S3 server, for coops' backups.
apiVersion: v1
kind: Secret
metadata:
  name: local-s3-keys
  namespace: cooperator-system
stringData:
  accessKeyID: %q
  secretAccessKey: %q
---
apiVersion: cooperator.dev/v1alpha1
kind: BackupStore
metadata:
  name: main
spec:
  endpoint: %s
  region: %s
  bucket: coop-backups
  insecure: true
  pathStyle: true
  credentialsSecretRef:
    name: local-s3-keys
    namespace: cooperator-system
`, s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Region)
	return os.WriteFile(path, []byte(manifest), 0o600)
}
