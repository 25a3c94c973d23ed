package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

// BenchmarkSharedDatabases provisions coops with a shared database on one
// fresh PostgreSQL server through the running operator, and reports the
// rate and the server's memory per idle database. Run it once:
//
//	make bench-databases    (go test ./controllers -run '^$' -bench SharedDatabases -benchtime 1x)
//
// BENCH_COOPS sets how many coops (default 500).
func BenchmarkSharedDatabases(b *testing.B) {
	coops := envInt("BENCH_COOPS", 500)
	ctx := context.Background()
	t := b
	for range b.N {
		pg := startPostgres(t)
		if err := addDatabaseServer(ctx, pg, "bench", "bench", int32(coops)); err != nil {
			b.Fatal(err)
		}
		stop := startOperator(t)
		waitServerReady(t, "bench")
		idle, err := pg.MemoryPSS()
		if err != nil {
			b.Fatal(err)
		}
		ddlBefore, _ := pg.DDLCount("cooperator")
		plan := planOnPool("bench-plan", "bench")
		plan.Spec.Database.ConnectionLimit = 5
		create(t, plan)

		start := time.Now()
		for i := range coops {
			create(t, newCoop(fmt.Sprintf("bench-%04d", i), "bench-plan"))
		}
		waitFor(t, 30*time.Minute, "every bench coop's database", func(ctx context.Context) (bool, error) {
			var list v1alpha1.CooperativeList
			if err := adminClient.List(ctx, &list); err != nil {
				return false, err
			}
			ready := 0
			for _, c := range list.Items {
				if c.Spec.Plan == "bench-plan" && meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.DatabaseReadyCondition) {
					ready++
				}
			}
			return ready == coops, nil
		})
		elapsed := time.Since(start)
		stop()
		// Let the server settle with no operator connections.
		time.Sleep(2 * time.Second)
		loaded, err := pg.MemoryPSS()
		if err != nil {
			b.Fatal(err)
		}
		ddlAfter, _ := pg.DDLCount("cooperator")
		disk := averageDatabaseSize(b, pg, "coop\\_bench\\_%")
		b.ReportMetric(float64(coops)/elapsed.Seconds(), "databases/s")
		b.ReportMetric(float64(loaded-idle)/float64(coops)/1024, "KiB-PSS/idle-db")
		b.ReportMetric(float64(ddlAfter-ddlBefore)/float64(coops), "DDL/db")
		b.ReportMetric(disk/1024, "KiB-disk/db")
		b.Logf("%d coops with databases in %s; server PSS %d MiB before, %d MiB after", coops, elapsed.Round(time.Millisecond), idle>>20, loaded>>20)
	}
}

func averageDatabaseSize(b *testing.B, pg *testenv.Postgres, like string) float64 {
	ctx := context.Background()
	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var size float64
	if err := conn.QueryRow(ctx, "SELECT avg(pg_database_size(datname))::float8 FROM pg_database WHERE datname LIKE $1", like).Scan(&size); err != nil {
		b.Fatal(err)
	}
	return size
}
