// faultfs: a libfuse3 pass-through filesystem over a backing directory that fails
// writes, syncs or reads on command. Used by the real-fault tests for I/O errors the
// kernel really returns (tests/faults/faults_test.cc, FuseTest).
//
//   faultfs BACKING_DIR MOUNTPOINT [-f] [-s] [other FUSE options]
//
// Every file is opened with FOPEN_DIRECT_IO, so each read and write reaches this process
// (no page cache in between): a commanded read fault is seen by the reader, not hidden by
// cached pages, and a write fault is returned by the write call itself.
//
// Control. The virtual file /.faultfs (not listed by readdir) takes commands, one per
// write(2), a line each:
//
//   KIND ERRNO [match=SUB] [skip=SUB] [from=N] [count=C] [drop]
//   off                  switch every fault off and zero the counters
//
// KIND is write, sync (fsync, fdatasync and fsyncdir) or read; ERRNO is EIO, ENOSPC,
// EACCES, EROFS, EDQUOT or a number. After the command, operations of KIND on paths that
// contain every match= substring and no skip= substring are counted from 1; those
// numbered from..from+count-1 fail with ERRNO (count=0: every one from `from` on; the
// defaults fail all). A new command for a KIND replaces the previous one.
// ERRNO may also be "flip" for reads: the read succeeds but one byte in the middle of
// what it returns is inverted (silent corruption on the read path).
// "drop" on a sync fault models Linux dropping dirty pages after a failed writeback: the
// ranges written through that open file since its last good sync are overwritten with
// zeros in the backing file before the error is returned, so data acknowledged after a
// failed sync would be missing at the next open.
//
// Reading /.faultfs returns the counters, one "name value" line each:
//   write_ops write_failed sync_ops sync_failed read_ops read_failed dropped_bytes
// (ops count every operation of the kind, matching or not, since the last "off").
//
// Thread-safety: FUSE runs handlers on several threads; the fault table is guarded by
// one mutex, each open file's dirty ranges by the same.

#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

enum { kWrite = 0, kSync = 1, kRead = 2, kKinds = 3 };
enum { kMaxMatch = 4, kMaxSub = 256, kFlip = -1 };
static const char* const kKindNames[kKinds] = {"write", "sync", "read"};
static const char kControlName[] = "/.faultfs";

struct Fault {
  bool on;
  int err;  // errno to return, or kFlip
  char match[kMaxMatch][kMaxSub];
  int n_match;
  char skip[kMaxMatch][kMaxSub];
  int n_skip;
  uint64_t from, count;  // 1-based first failing op; count 0: unbounded
  bool drop;
  uint64_t seen;  // matching ops since the command
};

struct Counters {
  uint64_t ops[kKinds];
  uint64_t failed[kKinds];
  uint64_t dropped_bytes;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct Fault g_faults[kKinds];
static struct Counters g_counters;
static char g_backing[PATH_MAX];

// An open file: the backing fd, its path (for matching), and the ranges written since its
// last good sync (for "drop").
struct Range {
  off_t off;
  size_t len;
};
struct Handle {
  int fd;
  char path[PATH_MAX];
  struct Range* dirty;
  size_t n_dirty, cap_dirty;
};

// The backing path of `path`; an empty string (which names nothing) if too long.
static void BackingPath(char* out, const char* path) {
  if (snprintf(out, PATH_MAX, "%s%s", g_backing, path) >= PATH_MAX) out[0] = '\0';
}

static bool Matches(const struct Fault* f, const char* path) {
  for (int i = 0; i < f->n_match; ++i) {
    if (strstr(path, f->match[i]) == NULL) return false;
  }
  for (int i = 0; i < f->n_skip; ++i) {
    if (strstr(path, f->skip[i]) != NULL) return false;
  }
  return true;
}

// Counts an operation of `kind` on `path` and decides its fate: 0 to pass, an errno (> 0)
// to fail with, kFlip to corrupt. *drop is set for a sync failure that drops data.
static int Decide(int kind, const char* path, bool* drop) {
  int result = 0;
  pthread_mutex_lock(&g_mu);
  g_counters.ops[kind]++;
  struct Fault* f = &g_faults[kind];
  if (f->on && Matches(f, path)) {
    const uint64_t n = ++f->seen;
    if (n >= f->from && (f->count == 0 || n < f->from + f->count)) {
      result = f->err;
      g_counters.failed[kind]++;
      if (drop != NULL) *drop = f->drop;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return result;
}

static int ParseErrno(const char* s) {
  static const struct {
    const char* name;
    int value;
  } kNames[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EACCES", EACCES},  {"EROFS", EROFS},
                {"EDQUOT", EDQUOT}, {"EPERM", EPERM},   {"EUCLEAN", EUCLEAN}};
  if (strcmp(s, "flip") == 0) return kFlip;
  for (size_t i = 0; i < sizeof(kNames) / sizeof(kNames[0]); ++i) {
    if (strcmp(s, kNames[i].name) == 0) return kNames[i].value;
  }
  char* end = NULL;
  long v = strtol(s, &end, 10);
  return (end != s && *end == '\0' && v > 0) ? (int)v : 0;
}

// Applies one command line; returns 0 or -EINVAL.
static int Command(char* line) {
  char* save = NULL;
  char* word = strtok_r(line, " \t\r\n", &save);
  if (word == NULL) return 0;
  if (strcmp(word, "off") == 0) {
    pthread_mutex_lock(&g_mu);
    memset(g_faults, 0, sizeof(g_faults));
    memset(&g_counters, 0, sizeof(g_counters));
    pthread_mutex_unlock(&g_mu);
    return 0;
  }
  int kind = -1;
  for (int k = 0; k < kKinds; ++k) {
    if (strcmp(word, kKindNames[k]) == 0) kind = k;
  }
  if (kind < 0) return -EINVAL;
  struct Fault f;
  memset(&f, 0, sizeof(f));
  f.on = true;
  f.from = 1;
  word = strtok_r(NULL, " \t\r\n", &save);
  if (word == NULL || (f.err = ParseErrno(word)) == 0) return -EINVAL;
  if (f.err == kFlip && kind != kRead) return -EINVAL;
  while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
    if (strncmp(word, "match=", 6) == 0 && f.n_match < kMaxMatch) {
      snprintf(f.match[f.n_match++], kMaxSub, "%s", word + 6);
    } else if (strncmp(word, "skip=", 5) == 0 && f.n_skip < kMaxMatch) {
      snprintf(f.skip[f.n_skip++], kMaxSub, "%s", word + 5);
    } else if (strncmp(word, "from=", 5) == 0) {
      f.from = strtoull(word + 5, NULL, 10);
    } else if (strncmp(word, "count=", 6) == 0) {
      f.count = strtoull(word + 6, NULL, 10);
    } else if (strcmp(word, "drop") == 0 && kind == kSync) {
      f.drop = true;
    } else {
      return -EINVAL;
    }
  }
  pthread_mutex_lock(&g_mu);
  g_faults[kind] = f;
  pthread_mutex_unlock(&g_mu);
  return 0;
}

static int FormatCounters(char* buf, size_t size) {
  pthread_mutex_lock(&g_mu);
  struct Counters c = g_counters;
  pthread_mutex_unlock(&g_mu);
  return snprintf(buf, size,
                  "write_ops %llu\nwrite_failed %llu\nsync_ops %llu\nsync_failed %llu\n"
                  "read_ops %llu\nread_failed %llu\ndropped_bytes %llu\n",
                  (unsigned long long)c.ops[kWrite], (unsigned long long)c.failed[kWrite],
                  (unsigned long long)c.ops[kSync], (unsigned long long)c.failed[kSync],
                  (unsigned long long)c.ops[kRead], (unsigned long long)c.failed[kRead],
                  (unsigned long long)c.dropped_bytes);
}

static bool IsControl(const char* path) { return path != NULL && strcmp(path, kControlName) == 0; }

static struct Handle* H(struct fuse_file_info* fi) { return (struct Handle*)(uintptr_t)fi->fh; }

static void AddDirty(struct Handle* h, off_t off, size_t len) {
  pthread_mutex_lock(&g_mu);
  if (h->n_dirty > 0) {
    struct Range* last = &h->dirty[h->n_dirty - 1];
    if (last->off + (off_t)last->len == off) {
      last->len += len;
      pthread_mutex_unlock(&g_mu);
      return;
    }
  }
  if (h->n_dirty == h->cap_dirty) {
    size_t cap = h->cap_dirty ? h->cap_dirty * 2 : 16;
    struct Range* grown = realloc(h->dirty, cap * sizeof(*grown));
    if (grown == NULL) {
      pthread_mutex_unlock(&g_mu);
      return;  // out of memory: the range is not tracked (drop becomes partial)
    }
    h->dirty = grown;
    h->cap_dirty = cap;
  }
  h->dirty[h->n_dirty++] = (struct Range){off, len};
  pthread_mutex_unlock(&g_mu);
}

// Overwrites the dirty ranges of `h` with zeros (the lost writeback) and forgets them.
static void DropDirty(struct Handle* h) {
  static const char kZeros[65536];
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < h->n_dirty; ++i) {
    off_t off = h->dirty[i].off;
    size_t left = h->dirty[i].len;
    while (left > 0) {
      size_t n = left < sizeof(kZeros) ? left : sizeof(kZeros);
      ssize_t w = pwrite(h->fd, kZeros, n, off);
      if (w <= 0) break;
      off += w;
      left -= (size_t)w;
      g_counters.dropped_bytes += (uint64_t)w;
    }
  }
  h->n_dirty = 0;
  pthread_mutex_unlock(&g_mu);
}

// ---- FUSE operations ---------------------------------------------------------------------

static void* FsInit(struct fuse_conn_info* conn, struct fuse_config* cfg) {
  (void)conn;
  cfg->use_ino = 1;
  cfg->direct_io = 1;
  // An unlinked open file is removed at once (no .fuse_hidden* files appearing in the
  // spool's directories); operations on it then arrive without a path.
  cfg->hard_remove = 1;
  cfg->nullpath_ok = 1;
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  return NULL;
}

static int FsGetattr(const char* path, struct stat* st, struct fuse_file_info* fi) {
  if (fi != NULL && fi->fh != 0) return fstat(H(fi)->fd, st) == 0 ? 0 : -errno;
  if (IsControl(path)) {
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = 4096;
    return 0;
  }
  char p[PATH_MAX];
  BackingPath(p, path);
  return lstat(p, st) == 0 ? 0 : -errno;
}

static int FsAccess(const char* path, int mask) {
  if (IsControl(path)) return 0;
  char p[PATH_MAX];
  BackingPath(p, path);
  return access(p, mask) == 0 ? 0 : -errno;
}

static int FsReaddir(const char* path, void* buf, fuse_fill_dir_t filler, off_t offset,
                     struct fuse_file_info* fi, enum fuse_readdir_flags flags) {
  (void)path;
  (void)offset;
  (void)flags;
  // A fresh descriptor per listing: fdopendir takes it over, and its offset is our own.
  int fd = openat(H(fi)->fd, ".", O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  DIR* d = fdopendir(fd);
  if (d == NULL) {
    int err = errno;
    close(fd);
    return -err;
  }
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = e->d_ino;
    st.st_mode = (mode_t)DTTOIF(e->d_type);
    if (filler(buf, e->d_name, &st, 0, 0) != 0) break;
  }
  closedir(d);
  return 0;
}

static int FsMkdir(const char* path, mode_t mode) {
  char p[PATH_MAX];
  BackingPath(p, path);
  return mkdir(p, mode) == 0 ? 0 : -errno;
}

static int FsUnlink(const char* path) {
  if (IsControl(path)) return -EPERM;
  char p[PATH_MAX];
  BackingPath(p, path);
  return unlink(p) == 0 ? 0 : -errno;
}

static int FsRmdir(const char* path) {
  char p[PATH_MAX];
  BackingPath(p, path);
  return rmdir(p) == 0 ? 0 : -errno;
}

static int FsSymlink(const char* target, const char* path) {
  char p[PATH_MAX];
  BackingPath(p, path);
  return symlink(target, p) == 0 ? 0 : -errno;
}

static int FsReadlink(const char* path, char* buf, size_t size) {
  char p[PATH_MAX];
  BackingPath(p, path);
  ssize_t n = readlink(p, buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

static int FsRename(const char* from, const char* to, unsigned int flags) {
  char a[PATH_MAX], b[PATH_MAX];
  BackingPath(a, from);
  BackingPath(b, to);
  return renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) == 0 ? 0 : -errno;
}

static int FsLink(const char* from, const char* to) {
  char a[PATH_MAX], b[PATH_MAX];
  BackingPath(a, from);
  BackingPath(b, to);
  return link(a, b) == 0 ? 0 : -errno;
}

static int FsChmod(const char* path, mode_t mode, struct fuse_file_info* fi) {
  if (fi != NULL && fi->fh != 0) return fchmod(H(fi)->fd, mode) == 0 ? 0 : -errno;
  char p[PATH_MAX];
  BackingPath(p, path);
  return chmod(p, mode) == 0 ? 0 : -errno;
}

static int FsChown(const char* path, uid_t uid, gid_t gid, struct fuse_file_info* fi) {
  if (fi != NULL && fi->fh != 0) return fchown(H(fi)->fd, uid, gid) == 0 ? 0 : -errno;
  char p[PATH_MAX];
  BackingPath(p, path);
  return lchown(p, uid, gid) == 0 ? 0 : -errno;
}

static int FsTruncate(const char* path, off_t size, struct fuse_file_info* fi) {
  if (IsControl(path)) return 0;
  if (fi != NULL && fi->fh != 0) return ftruncate(H(fi)->fd, size) == 0 ? 0 : -errno;
  char p[PATH_MAX];
  BackingPath(p, path);
  return truncate(p, size) == 0 ? 0 : -errno;
}

static int FsUtimens(const char* path, const struct timespec tv[2], struct fuse_file_info* fi) {
  if (fi != NULL && fi->fh != 0) return futimens(H(fi)->fd, tv) == 0 ? 0 : -errno;
  char p[PATH_MAX];
  BackingPath(p, path);
  return utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

// Makes the open descriptor `fd` of `path` the file handle of `fi`. On failure closes fd
// and returns -ENOMEM.
static int AttachHandle(int fd, const char* path, struct fuse_file_info* fi) {
  struct Handle* h = calloc(1, sizeof(*h));
  if (h == NULL) {
    close(fd);
    return -ENOMEM;
  }
  h->fd = fd;
  snprintf(h->path, sizeof(h->path), "%s", path);
  fi->fh = (uint64_t)(uintptr_t)h;
  return 0;
}

static int OpenHandle(const char* path, int flags, mode_t mode, bool create,
                      struct fuse_file_info* fi) {
  char p[PATH_MAX];
  BackingPath(p, path);
  // O_DIRECT is served by FOPEN_DIRECT_IO here; the backing file is opened buffered so
  // that unaligned FUSE requests work.
  flags &= ~O_DIRECT;
  int fd = create ? open(p, flags, mode) : open(p, flags);
  if (fd < 0) return -errno;
  int err = AttachHandle(fd, path, fi);
  if (err == 0) fi->direct_io = 1;
  return err;
}

static int FsCreate(const char* path, mode_t mode, struct fuse_file_info* fi) {
  return OpenHandle(path, fi->flags, mode, true, fi);
}

static int FsOpen(const char* path, struct fuse_file_info* fi) {
  if (IsControl(path)) {
    fi->fh = 0;
    fi->direct_io = 1;
    return 0;
  }
  return OpenHandle(path, fi->flags, 0, false, fi);
}

static int FsRead(const char* path, char* buf, size_t size, off_t off, struct fuse_file_info* fi) {
  (void)path;
  if (fi->fh == 0) {
    char text[512];
    int n = FormatCounters(text, sizeof(text));
    if (off >= n) return 0;
    size_t len = (size_t)(n - off) < size ? (size_t)(n - off) : size;
    memcpy(buf, text + off, len);
    return (int)len;
  }
  struct Handle* h = H(fi);
  int fate = Decide(kRead, h->path, NULL);
  if (fate > 0) return -fate;
  ssize_t n = pread(h->fd, buf, size, off);
  if (n < 0) return -errno;
  if (fate == kFlip && n > 0) buf[n / 2] = (char)~buf[n / 2];
  return (int)n;
}

static int FsWrite(const char* path, const char* buf, size_t size, off_t off,
                   struct fuse_file_info* fi) {
  (void)path;
  if (fi->fh == 0) {
    char line[2048];
    size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
    memcpy(line, buf, n);
    line[n] = '\0';
    int r = Command(line);
    return r < 0 ? r : (int)size;
  }
  struct Handle* h = H(fi);
  int fate = Decide(kWrite, h->path, NULL);
  if (fate > 0) return -fate;
  ssize_t n = pwrite(h->fd, buf, size, off);
  if (n < 0) return -errno;
  AddDirty(h, off, (size_t)n);
  return (int)n;
}

static int FsStatfs(const char* path, struct statvfs* st) {
  char p[PATH_MAX];
  BackingPath(p, (path == NULL || IsControl(path)) ? "/" : path);
  return statvfs(p, st) == 0 ? 0 : -errno;
}

static int FsFlush(const char* path, struct fuse_file_info* fi) {
  (void)path;
  (void)fi;
  return 0;
}

static int FsRelease(const char* path, struct fuse_file_info* fi) {
  (void)path;
  if (fi->fh == 0) return 0;
  struct Handle* h = H(fi);
  close(h->fd);
  free(h->dirty);
  free(h);
  return 0;
}

static int FsFsync(const char* path, int datasync, struct fuse_file_info* fi) {
  (void)path;
  if (fi == NULL || fi->fh == 0) return 0;
  struct Handle* h = H(fi);
  bool drop = false;
  int fate = Decide(kSync, h->path, &drop);
  if (fate > 0) {
    if (drop) DropDirty(h);
    return -fate;
  }
  int r = datasync ? fdatasync(h->fd) : fsync(h->fd);
  if (r != 0) return -errno;
  pthread_mutex_lock(&g_mu);
  h->n_dirty = 0;
  pthread_mutex_unlock(&g_mu);
  return 0;
}

static int FsOpendir(const char* path, struct fuse_file_info* fi) {
  char p[PATH_MAX];
  BackingPath(p, path);
  int fd = open(p, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  return AttachHandle(fd, path, fi);
}

static int FsReleasedir(const char* path, struct fuse_file_info* fi) { return FsRelease(path, fi); }

static int FsFsyncdir(const char* path, int datasync, struct fuse_file_info* fi) {
  (void)path;
  (void)datasync;
  if (fi == NULL || fi->fh == 0) return 0;
  struct Handle* h = H(fi);
  int fate = Decide(kSync, h->path, NULL);
  if (fate > 0) return -fate;
  return fsync(h->fd) == 0 ? 0 : -errno;
}

static int FsFallocate(const char* path, int mode, off_t off, off_t len,
                       struct fuse_file_info* fi) {
  (void)path;
  if (fi == NULL || fi->fh == 0) return -EOPNOTSUPP;
  return fallocate(H(fi)->fd, mode, off, len) == 0 ? 0 : -errno;
}

static off_t FsLseek(const char* path, off_t off, int whence, struct fuse_file_info* fi) {
  (void)path;
  if (fi == NULL || fi->fh == 0) return -EINVAL;
  off_t r = lseek(H(fi)->fd, off, whence);
  return r < 0 ? -errno : r;
}

static const struct fuse_operations kOps = {
    .init = FsInit,
    .getattr = FsGetattr,
    .access = FsAccess,
    .readlink = FsReadlink,
    .readdir = FsReaddir,
    .mkdir = FsMkdir,
    .symlink = FsSymlink,
    .unlink = FsUnlink,
    .rmdir = FsRmdir,
    .rename = FsRename,
    .link = FsLink,
    .chmod = FsChmod,
    .chown = FsChown,
    .truncate = FsTruncate,
    .utimens = FsUtimens,
    .create = FsCreate,
    .open = FsOpen,
    .read = FsRead,
    .write = FsWrite,
    .statfs = FsStatfs,
    .flush = FsFlush,
    .release = FsRelease,
    .fsync = FsFsync,
    .opendir = FsOpendir,
    .releasedir = FsReleasedir,
    .fsyncdir = FsFsyncdir,
    .fallocate = FsFallocate,
    .lseek = FsLseek,
};

int main(int argc, char* argv[]) {
  if (argc < 3 || strcmp(argv[1], "--help") == 0) {
    fprintf(stderr, "usage: faultfs BACKING_DIR MOUNTPOINT [FUSE options]\n");
    return argc < 3 ? 2 : 0;
  }
  if (realpath(argv[1], g_backing) == NULL) {
    fprintf(stderr, "faultfs: backing directory %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  // FUSE sees the arguments without the backing directory.
  argv[1] = argv[0];
  return fuse_main(argc - 1, argv + 1, &kOps, NULL);
}
