#!/usr/bin/python3
"""A passthrough FUSE file system that can turn read-only while mounted, for tests/faults.rs.

    /usr/bin/python3 rofs.py BACKING MOUNTPOINT SWITCH

mirrors the directory BACKING onto MOUNTPOINT. While the file SWITCH exists (it must lie
outside the mount), every operation that would change the file system fails with EROFS, as on
a file system the kernel turned read-only under its users (ext4's errors=remount-ro, a storage
layer going read-only): files already open for writing stay open, but writing through them
fails, and so does opening anything for writing. Reads, stat, locks and mmap go on.
Removing SWITCH makes it writable again. The switch is a file rather than a signal because
the test must know the flip has happened before it goes on: the next operation sees it.

Decisions:
- fsync and flush succeed when read-only: a kernel remounting read-only writes back what is
  dirty first and fsync then answers 0 (ext4 does), and here no write under the fault got
  through, so there is nothing left for an fsync to make durable.
- No `lock` operation: libfuse then leaves POSIX locks to the kernel, on the mount's inodes,
  which is what SQLite's locks need from every process on this machine.
- No `direct_io`: reads and mmap go through the page cache, so SQLite's shared mmap of the
  WAL index (`-shm`) works; writes are write-through (no writeback cache), so a write under
  the fault fails at the write() call itself.

Run in the foreground as a child process: it prints "mounted" once the kernel has mounted it,
and exits once the mount point is unmounted (`umount MOUNTPOINT`). As root, libfuse mounts and
unmounts without fusermount. Debian's python3-fusepy names the module `fusepy`; fusepy from
PyPI names it `fuse`.
"""

import errno
import os
import sys

try:
    import fusepy as fuse
except ImportError:
    import fuse

# The stat fields passed through as they are on the backing file (times in nanoseconds).
STAT_FIELDS = ('st_mode', 'st_ino', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_blocks')
STATVFS_FIELDS = ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files',
                  'f_ffree', 'f_favail', 'f_flag', 'f_namemax')
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


class ReadOnlySwitch(fuse.Operations):
    use_ns = True  # times in nanoseconds, as fusepy asks for

    def __init__(self, backing, switch):
        self.backing = os.path.realpath(backing)
        self.switch = switch

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip('/'))

    def _refuse_if_read_only(self):
        if os.path.exists(self.switch):
            raise fuse.FuseOSError(errno.EROFS)

    def init(self, path):
        print('mounted', flush=True)

    # ---- Reads: always allowed ----

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._path(path))
        attrs = {f: getattr(st, f) for f in STAT_FIELDS}
        for f in ('st_atime', 'st_mtime', 'st_ctime'):
            attrs[f] = getattr(st, f + '_ns')
        return attrs

    def access(self, path, mode):
        if mode & os.W_OK:
            self._refuse_if_read_only()
        if not os.access(self._path(path), mode):
            exists = os.path.lexists(self._path(path))
            raise fuse.FuseOSError(errno.EACCES if exists else errno.ENOENT)

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {f: getattr(st, f) for f in STATVFS_FIELDS}

    def open(self, path, flags):
        if flags & WRITE_FLAGS:
            self._refuse_if_read_only()
        return os.open(self._path(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)

    # ---- Writes: refused with EROFS while the switch exists ----

    def create(self, path, mode, fi=None):
        self._refuse_if_read_only()
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def write(self, path, data, offset, fh):
        self._refuse_if_read_only()
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._refuse_if_read_only()
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._path(path), length)

    def unlink(self, path):
        self._refuse_if_read_only()
        os.unlink(self._path(path))

    def rename(self, old, new):
        self._refuse_if_read_only()
        os.rename(self._path(old), self._path(new))

    def link(self, target, source):
        self._refuse_if_read_only()
        os.link(self._path(source), self._path(target))

    def symlink(self, target, source):
        self._refuse_if_read_only()
        os.symlink(source, self._path(target))

    def mkdir(self, path, mode):
        self._refuse_if_read_only()
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        self._refuse_if_read_only()
        os.rmdir(self._path(path))

    def chmod(self, path, mode):
        self._refuse_if_read_only()
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        self._refuse_if_read_only()
        os.chown(self._path(path), uid, gid)

    def utimens(self, path, times=None):
        self._refuse_if_read_only()
        os.utime(self._path(path), ns=times)


def main():
    backing, mountpoint, switch = sys.argv[1:4]
    # foreground: the test owns this process; use_ino: stat shows the backing inode numbers,
    # which SQLite uses to tell files apart.
    fuse.FUSE(ReadOnlySwitch(backing, switch), mountpoint, foreground=True, use_ino=True,
              fsname='bindery-rofs')


if __name__ == '__main__':
    main()
