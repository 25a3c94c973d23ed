package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkBackup makes databases of two sizes, the larger of
// $COOPERATOR_BENCH_BACKUP_MIB MiB (default 1024), and compares the
// runner's throughput, from PostgreSQL to the S3 server, with that of a
// plain `pg_dump -Fc > /dev/null`, and reports the runner's peak RSS.
// $COOPERATOR_BENCH_BACKUP_FLAGS adds flags to `cooperator backup`.
// Run it with `make bench-backup`; see docs/performance.md.
func BenchmarkBackup(b *testing.B) {
	mib := 1024
	if v := os.Getenv("COOPERATOR_BENCH_BACKUP_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 8 {
			b.Fatalf("COOPERATOR_BENCH_BACKUP_MIB=%q must be a number of MiB, at least 8", v)
		}
		mib = n
	}
	for _, size := range []int{mib / 4, mib} {
		b.Run(fmt.Sprintf("%dMiB", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchmarkOnce(b, size, i)
			}
		})
	}
}

func benchmarkOnce(b *testing.B, mib, run int) {
	b.StopTimer()
	name := fmt.Sprintf("bench_%d_%d", mib, run)
	db := newCoopDB(b, name)
	defer superExec(b, "DROP DATABASE "+name+" WITH (FORCE)")
	// About 200 bytes a row on disk; text that compresses about as well
	// as an app's usually does.
	rows := mib << 20 / 200
	start := time.Now()
	db.exec(b, fmt.Sprintf(`
CREATE TABLE events (id bigint PRIMARY KEY, kind text, body text, amount numeric, at timestamptz);
INSERT INTO events SELECT g, 'kind-' || g %% 13, md5(g::text) || ' ' || md5((g * 31)::text) || ' ' || repeat('x', g %% 40) || md5((g %% 1000)::text),
  (g %% 10000) / 100.0, '2026-01-01'::timestamptz + g * interval '1 second'
FROM generate_series(1, %d) g`, rows))
	// Set hint bits now, so that pg_dump's first read does not write.
	db.exec(b, "VACUUM ANALYZE events")
	var dbBytes int64
	if err := db.conn(b).QueryRow(context.Background(), "SELECT pg_database_size(current_database())").Scan(&dbBytes); err != nil {
		b.Fatal(err)
	}
	b.Logf("made a database of %d MiB in %s", dbBytes>>20, time.Since(start).Round(time.Second))
	env := storeEnv(s3, db)

	// pg_dump once to warm the page cache, then once measured.
	dump := func() time.Duration {
		cmd := exec.Command("pg_dump", "-Fc", "--dbname="+pg.URL(db.user, db.password, db.name))
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = devNull.Close() }()
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = devNull, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("pg_dump: %v\n%s", err, stderr.String())
		}
		return time.Since(start)
	}
	dump()
	pgDump := dump()

	b.StartTimer()
	args := append([]string{"backup", "--coop", strings.ReplaceAll(name, "_", "-")}, strings.Fields(os.Getenv("COOPERATOR_BENCH_BACKUP_FLAGS"))...)
	runnerTime, peak, anon := runMeasured(b, env, args...)
	b.StopTimer()

	mbps := func(d time.Duration) float64 { return float64(dbBytes) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(runnerTime), "runner-MB/s")
	b.ReportMetric(mbps(pgDump), "pgdump-MB/s")
	b.ReportMetric(pgDump.Seconds()/runnerTime.Seconds(), "ratio")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(anon)/(1<<20), "peak-anon-MiB")
	b.Logf("database %d MiB: pg_dump -Fc %s (%.0f MB/s), runner %s (%.0f MB/s), ratio %.2f, runner peak RSS %.1f MiB (anonymous %.1f MiB)",
		dbBytes>>20, pgDump.Round(time.Millisecond), mbps(pgDump), runnerTime.Round(time.Millisecond), mbps(runnerTime),
		pgDump.Seconds()/runnerTime.Seconds(), float64(peak)/(1<<20), float64(anon)/(1<<20))
}

// runMeasured runs the runner and returns how long it took, its peak RSS
// (VmHWM, read from /proc while it ran; not the rusage of its exit, which
// counts pg_dump, its child, too), and the peak of its anonymous memory:
// the RSS less the binary's own pages, which are mapped from the file
// and do not grow with the data.
func runMeasured(b *testing.B, env []string, args ...string) (time.Duration, int64, int64) {
	cmd := exec.Command(runner, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	hwm := make(chan [2]int64, 1)
	stop := make(chan struct{})
	go func() {
		var peak, anon int64
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			v := procStatus(status)
			peak, anon = max(peak, v["VmHWM"]), max(anon, v["RssAnon"])
			select {
			case <-stop:
				hwm <- [2]int64{peak, anon}
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	elapsed := time.Since(start)
	close(stop)
	peaks := <-hwm
	if err != nil {
		b.Fatalf("runner: %v\n%s", err, stderr.String())
	}
	return elapsed, peaks[0], peaks[1]
}

// procStatus reads the sizes in /proc/<pid>/status, in bytes.
func procStatus(path string) map[string]int64 {
	out := map[string]int64{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] = kb * 1024
		}
	}
	return out
}
