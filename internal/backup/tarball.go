package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Volume is a data directory of an app, as mounted in the runner's pod.
type Volume struct {
	// Name names the volume's object: volumes/<name>.tar.zst.
	Name string
	// Path is the directory.
	Path string
}

// Validate refuses a volume that cannot be backed up, naming the field.
func (v Volume) Validate() error {
	if err := v.validateName(); err != nil {
		return err
	}
	if v.Path == "" {
		return fmt.Errorf("volume %s: path is required", v.Name)
	}
	fi, err := os.Stat(v.Path)
	if err != nil {
		return fmt.Errorf("volume %s: %w", v.Name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("volume %s: %s is not a directory", v.Name, v.Path)
	}
	return nil
}

func (v Volume) validateName() error {
	if !coopName.MatchString(v.Name) {
		return fmt.Errorf("volume name %q must be a DNS label: lower-case letters, digits and '-'", v.Name)
	}
	return nil
}

// Restores stage their files inside the live directory, under these
// names, which backups skip should a restore have been cut short.
const (
	stagingPrefix  = ".cooperator-restore-"
	previousPrefix = ".cooperator-previous-"
)

func isScratch(name string) bool {
	return strings.HasPrefix(name, stagingPrefix) || strings.HasPrefix(name, previousPrefix)
}

// writeTar writes dir's tree to w: directories, regular files and
// symbolic links, with their modes and times. Sockets, devices and pipes
// are skipped: they hold no data.
func writeTar(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if filepath.Dir(rel) == "." && isScratch(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		// Owners are the pod's; a restore writes as the runner's user.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("%s shrank while it was read; try again when it is not being written", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("while archiving %s: %w", dir, err)
	}
	return tw.Close()
}

// extractTar unpacks r into dir, which must exist. Names that would land
// outside dir are refused.
func extractTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	type dirTime struct {
		name string
		mod  time.Time
	}
	var dirs []dirTime
	buf := make([]byte, 256<<10)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("while reading the archive: %w", err)
		}
		name := path.Clean(strings.TrimSuffix(hdr.Name, "/"))
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q is outside the volume", hdr.Name)
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
			if err := root.Chmod(name, mode|0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{name, hdr.ModTime})
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(name), 0o700); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(f, tr, buf)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("while writing %s: %w", name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
			if err := root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.MkdirAll(path.Dir(name), 0o700); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		default:
			// What writeTar never writes.
			return fmt.Errorf("archive entry %q is of an unsupported type %q", hdr.Name, hdr.Typeflag)
		}
	}
	// Last, and deepest first: writing into a directory changes its time.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := root.Chtimes(d.name, d.mod, d.mod); err != nil {
			return err
		}
	}
	return nil
}

// swapIn replaces dir's entries by staging's, which is inside dir. A
// volume's directory is often a mount point, which cannot be renamed, so
// the swap is of its entries, each an atomic rename. On failure every
// entry is put back.
func swapIn(dir, staging, previous string) (err error) {
	if err := os.Mkdir(previous, 0o700); err != nil {
		return err
	}
	live, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var movedOut, movedIn []string
	defer func() {
		if err == nil {
			return
		}
		for _, name := range movedIn {
			_ = os.Rename(filepath.Join(dir, name), filepath.Join(staging, name))
		}
		for _, name := range movedOut {
			_ = os.Rename(filepath.Join(previous, name), filepath.Join(dir, name))
		}
		_ = os.Remove(previous)
	}()
	for _, e := range live {
		if isScratch(e.Name()) {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(previous, e.Name())); err != nil {
			return err
		}
		movedOut = append(movedOut, e.Name())
	}
	restored, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	for _, e := range restored {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		movedIn = append(movedIn, e.Name())
	}
	return nil
}
