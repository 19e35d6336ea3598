#include "agent/images/layer_unpacker.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "agent/images/content_digest.h"

namespace ferry::images {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

using ArchivePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;

ArchivePtr openReader(const std::string& path, bool raw, Error* error) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  if (raw) {
    archive_read_support_format_raw(a.get());
  } else {
    archive_read_support_format_tar(a.get());
  }
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    *error = Error{EINVAL, fmt::format("open {}: {}", path, archive_error_string(a.get()))};
    return ArchivePtr(nullptr, archive_read_free);
  }
  return a;
}

// Archive path → components. Absolute paths and ".." are refused; "." and empty
// components are dropped (so "./" is the layer root, an empty list).
Result<std::vector<std::string>> splitEntryPath(const std::string& path) {
  if (!path.empty() && path.front() == '/') return fail(Error::invalid(fmt::format("\"{}\": absolute path", path)));
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part == "..") return fail(Error::invalid(fmt::format("\"{}\": \"..\" in path", path)));
    if (!part.empty() && part != ".") parts.push_back(part);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

// Opens `name` in `dir` as a directory, refusing symlinks and anything that would leave
// `dir` — the kernel checks it (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
int openDirBeneath(int dir, const std::string& name) {
  struct open_how how {};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(::syscall(SYS_openat2, dir, name.c_str(), &how, sizeof how));
}

struct DeferredDir {
  std::vector<std::string> parts;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  struct timespec mtime;
};

class LayerWriter {
 public:
  explicit LayerWriter(int root) : root_(root), privileged_(::geteuid() == 0) {}

  Status writeEntry(struct archive* a, struct archive_entry* entry, UnpackedLayer& out);
  Status finishDirectories();

 private:
  // Opens the directory holding the entry's last component, creating missing parents.
  Result<Fd> openParent(const std::vector<std::string>& parts, size_t count, bool create, const std::string& what);
  // Makes room for a new entry called `name` in `dir`: an existing non-directory (or an empty
  // directory, when the new entry is not a directory) from earlier in this layer goes.
  Status clearName(int dir, const std::string& name, bool keepDirectory, const std::string& what);
  Status setOwner(int dir, const std::string& name, struct archive_entry* entry, const std::string& what);
  Status setTimes(int dir, const std::string& name, struct archive_entry* entry, const std::string& what);

  int root_;
  bool privileged_;
  std::vector<DeferredDir> dirs_;
};

Result<Fd> LayerWriter::openParent(const std::vector<std::string>& parts, size_t count, bool create,
                                   const std::string& what) {
  Fd current(::dup(root_));
  if (current.get() < 0) return failErrno(what + ": dup");
  for (size_t i = 0; i < count; ++i) {
    int next = openDirBeneath(current.get(), parts[i]);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(current.get(), parts[i].c_str(), 0755) < 0 && errno != EEXIST)
        return failErrno(fmt::format("{}: mkdir {}", what, parts[i]));
      next = openDirBeneath(current.get(), parts[i]);
    }
    if (next < 0) {
      if (errno == ELOOP || errno == EXDEV)
        return fail(Error::invalid(fmt::format("{}: parent \"{}\" is a symlink; writing through links is refused", what, parts[i])));
      if (errno == ENOTDIR) return fail(Error::invalid(fmt::format("{}: parent \"{}\" is not a directory", what, parts[i])));
      return failErrno(fmt::format("{}: open parent \"{}\"", what, parts[i]));
    }
    current = Fd(next);
  }
  return current;
}

Status LayerWriter::clearName(int dir, const std::string& name, bool keepDirectory, const std::string& what) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return {};
    return failErrno(what + ": stat");
  }
  if (S_ISDIR(st.st_mode)) {
    if (keepDirectory) return {};
    if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) < 0) return failErrno(what + ": replace directory");
    return {};
  }
  if (::unlinkat(dir, name.c_str(), 0) < 0) return failErrno(what + ": replace");
  return {};
}

Status LayerWriter::setOwner(int dir, const std::string& name, struct archive_entry* entry, const std::string& what) {
  if (!privileged_) return {};  // an unprivileged unpack (tests) keeps the caller's ids
  if (::fchownat(dir, name.c_str(), static_cast<uid_t>(archive_entry_uid(entry)),
                 static_cast<gid_t>(archive_entry_gid(entry)), AT_SYMLINK_NOFOLLOW) < 0)
    return failErrno(what + ": chown");
  return {};
}

Status LayerWriter::setTimes(int dir, const std::string& name, struct archive_entry* entry, const std::string& what) {
  struct timespec times[2];
  times[0].tv_sec = archive_entry_mtime(entry);
  times[0].tv_nsec = archive_entry_mtime_nsec(entry);
  times[1] = times[0];
  if (::utimensat(dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) return failErrno(what + ": set times");
  return {};
}

Status LayerWriter::writeEntry(struct archive* a, struct archive_entry* entry, UnpackedLayer& out) {
  const char* rawPath = archive_entry_pathname(entry);
  std::string path = rawPath ? rawPath : "";
  std::string what = fmt::format("entry \"{}\"", path);
  auto parts = splitEntryPath(path);
  if (!parts) return fail(Error::invalid("entry " + parts.error().message));
  if (parts->empty()) return {};  // the layer root itself ("./")

  const std::string name = parts->back();
  auto parent = openParent(*parts, parts->size() - 1, /*create=*/true, what);
  if (!parent) return fail(parent.error());
  int dir = parent->get();

  // Whiteouts: made here in overlayfs' format, never copied from the archive.
  if (name.rfind(".wh.", 0) == 0) {
    if (name == ".wh..wh..opq") {
      if (::fsetxattr(dir, "trusted.overlay.opaque", "y", 1, 0) < 0) return failErrno(what + ": mark directory opaque");
      return {};
    }
    if (name.rfind(".wh..wh.", 0) == 0) return {};  // aufs bookkeeping, meaningless here
    std::string hidden = name.substr(4);
    if (hidden.empty() || hidden == "." || hidden == "..") return fail(Error::invalid(what + ": malformed whiteout"));
    if (auto s = clearName(dir, hidden, false, what); !s) return s;
    if (::mknodat(dir, hidden.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0) return failErrno(what + ": make whiteout");
    return {};
  }

  if (const char* linkTarget = archive_entry_hardlink(entry)) {
    auto targetParts = splitEntryPath(linkTarget);
    if (!targetParts || targetParts->empty())
      return fail(Error::invalid(fmt::format("{}: hard link target \"{}\" is outside the layer", what, linkTarget)));
    auto targetDir = openParent(*targetParts, targetParts->size() - 1, /*create=*/false,
                                fmt::format("{}: hard link target \"{}\"", what, linkTarget));
    if (!targetDir) return fail(targetDir.error());
    struct stat st {};
    if (::fstatat(targetDir->get(), targetParts->back().c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
      return failErrno(fmt::format("{}: hard link target \"{}\"", what, linkTarget));
    if (S_ISDIR(st.st_mode)) return fail(Error::invalid(fmt::format("{}: hard link to a directory", what)));
    if (auto s = clearName(dir, name, false, what); !s) return s;
    if (::linkat(targetDir->get(), targetParts->back().c_str(), dir, name.c_str(), 0) < 0)
      return failErrno(what + ": link");
    return {};
  }

  mode_t type = archive_entry_filetype(entry);
  mode_t perm = archive_entry_perm(entry) & 07777;
  switch (type) {
    case AE_IFDIR: {
      if (auto s = clearName(dir, name, /*keepDirectory=*/true, what); !s) return s;
      if (::mkdirat(dir, name.c_str(), 0700) < 0 && errno != EEXIST) return failErrno(what + ": mkdir");
      DeferredDir d{*parts, perm, static_cast<uid_t>(archive_entry_uid(entry)),
                    static_cast<gid_t>(archive_entry_gid(entry)), {}};
      d.mtime.tv_sec = archive_entry_mtime(entry);
      d.mtime.tv_nsec = archive_entry_mtime_nsec(entry);
      dirs_.push_back(std::move(d));
      return {};
    }
    case AE_IFREG: {
      if (auto s = clearName(dir, name, false, what); !s) return s;
      Fd file(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (file.get() < 0) return failErrno(what + ": create");
      const void* block;
      size_t size;
      la_int64_t offset;
      while (true) {
        int r = archive_read_data_block(a, &block, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) return fail(Error::invalid(fmt::format("{}: {}", what, archive_error_string(a))));
        const char* p = static_cast<const char*>(block);
        while (size > 0) {
          ssize_t n = ::pwrite(file.get(), p, size, offset);
          if (n < 0) {
            if (errno == EINTR) continue;
            return failErrno(what + ": write");
          }
          p += n;
          offset += n;
          size -= static_cast<size_t>(n);
        }
      }
      // Sparse files end in a hole that no data block covers.
      if (::ftruncate(file.get(), archive_entry_size(entry)) < 0) return failErrno(what + ": truncate");
      if (auto s = setOwner(dir, name, entry, what); !s) return s;
      // After chown, which clears set-id bits.
      if (::fchmod(file.get(), perm) < 0) return failErrno(what + ": chmod");
      out.sizeBytes += archive_entry_size(entry);
      return setTimes(dir, name, entry, what);
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(entry);
      if (!target || !*target) return fail(Error::invalid(what + ": symlink without target"));
      // A relative target is resolved from the link's directory; climbing above the layer
      // root is hostile. An absolute target is resolved in the container's root.
      if (target[0] != '/') {
        long depth = static_cast<long>(parts->size()) - 1;
        std::string t = target;
        size_t start = 0;
        while (start <= t.size()) {
          size_t slash = t.find('/', start);
          std::string part = t.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
          if (part == "..") {
            if (--depth < 0)
              return fail(Error::invalid(fmt::format("{}: symlink target \"{}\" escapes the layer root", what, t)));
          } else if (!part.empty() && part != ".") {
            ++depth;
          }
          if (slash == std::string::npos) break;
          start = slash + 1;
        }
      }
      if (auto s = clearName(dir, name, false, what); !s) return s;
      if (::symlinkat(target, dir, name.c_str()) < 0) return failErrno(what + ": symlink");
      if (auto s = setOwner(dir, name, entry, what); !s) return s;
      return setTimes(dir, name, entry, what);
    }
    case AE_IFIFO: {
      if (auto s = clearName(dir, name, false, what); !s) return s;
      if (::mkfifoat(dir, name.c_str(), perm) < 0) return failErrno(what + ": mkfifo");
      if (auto s = setOwner(dir, name, entry, what); !s) return s;
      if (::fchmodat(dir, name.c_str(), perm, 0) < 0) return failErrno(what + ": chmod");
      return setTimes(dir, name, entry, what);
    }
    case AE_IFCHR:
    case AE_IFBLK:
      return fail(Error::invalid(what + ": device nodes are not allowed in image layers"));
    default:
      return fail(Error::invalid(fmt::format("{}: unsupported file type {:o}", what, type)));
  }
}

Status LayerWriter::finishDirectories() {
  // Last, so that creating children did not change their times, and a read-only directory
  // mode does not get in the way of its own entries.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    std::string what = fmt::format("directory \"{}\"", fmt::join(it->parts, "/"));
    auto parent = openParent(it->parts, it->parts.size() - 1, false, what);
    if (!parent) return fail(parent.error());
    const std::string& name = it->parts.back();
    struct stat st {};
    if (::fstatat(parent->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
      continue;  // replaced later in the layer
    if (privileged_ && ::fchownat(parent->get(), name.c_str(), it->uid, it->gid, AT_SYMLINK_NOFOLLOW) < 0)
      return failErrno(what + ": chown");
    if (::fchmodat(parent->get(), name.c_str(), it->mode, 0) < 0) return failErrno(what + ": chmod");
    struct timespec times[2] = {it->mtime, it->mtime};
    if (::utimensat(parent->get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) return failErrno(what + ": set times");
  }
  return {};
}

// Lexically normalized relative path, or empty when it is absolute or climbs out.
std::string cleanMemberPath(const std::string& p) {
  if (p.empty() || p.front() == '/') return "";
  std::vector<std::string> parts;
  std::stringstream ss(p);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return "";
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const auto& x : parts) out += (out.empty() ? "" : "/") + x;
  return out;
}

}  // namespace

Result<UnpackedLayer> unpackLayer(const std::string& layerPath, const std::string& targetDir) {
  Error openError;
  ArchivePtr a = openReader(layerPath, /*raw=*/false, &openError);
  if (!a) return fail(openError);
  Fd root(::open(targetDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (root.get() < 0) return failErrno("open " + targetDir);
  LayerWriter writer(root.get());
  UnpackedLayer out;
  while (true) {
    struct archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r == ARCHIVE_FATAL || (r != ARCHIVE_OK && r != ARCHIVE_WARN))
      return fail(Error::invalid(fmt::format("layer {}: {}", layerPath, archive_error_string(a.get()))));
    if (auto s = writer.writeEntry(a.get(), entry, out); !s) return fail(std::move(s.error()).wrap("layer " + layerPath));
  }
  if (auto s = writer.finishDirectories(); !s) return fail(std::move(s.error()).wrap("layer " + layerPath));
  return out;
}

Result<std::string> uncompressedDigest(const std::string& layerPath) {
  Error openError;
  ArchivePtr a = openReader(layerPath, /*raw=*/true, &openError);
  if (!a) return fail(openError);
  struct archive_entry* entry = nullptr;
  Sha256 hash;
  int r = archive_read_next_header(a.get(), &entry);
  if (r == ARCHIVE_EOF) return hash.digest();
  if (r != ARCHIVE_OK) return fail(Error::invalid(fmt::format("layer {}: {}", layerPath, archive_error_string(a.get()))));
  char buf[1 << 16];
  while (true) {
    la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
    if (n < 0) return fail(Error::invalid(fmt::format("layer {}: {}", layerPath, archive_error_string(a.get()))));
    if (n == 0) break;
    hash.update(buf, static_cast<size_t>(n));
  }
  return hash.digest();
}

Result<std::map<std::string, std::string>> extractArchive(const std::string& tarPath, const std::string& dir) {
  std::unique_ptr<struct archive, int (*)(struct archive*)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), tarPath.c_str(), 1 << 16) != ARCHIVE_OK)
    return fail(Error::invalid(fmt::format("open {}: {}", tarPath, archive_error_string(a.get()))));
  std::map<std::string, std::string> files;
  std::map<std::string, std::string> symlinks;
  int counter = 0;
  while (true) {
    struct archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return fail(Error::invalid(fmt::format("{}: {}", tarPath, archive_error_string(a.get()))));
    std::string name = cleanMemberPath(archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "");
    if (name.empty()) continue;
    if (archive_entry_filetype(entry) == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      std::string base = name.find('/') == std::string::npos ? "" : name.substr(0, name.rfind('/') + 1);
      std::string resolved = target ? cleanMemberPath(base + target) : "";
      if (!resolved.empty()) symlinks[name] = resolved;
      continue;
    }
    if (archive_entry_hardlink(entry)) {
      std::string resolved = cleanMemberPath(archive_entry_hardlink(entry));
      if (!resolved.empty()) symlinks[name] = resolved;
      continue;
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    // Files get flat generated names: archive paths never become paths on disk.
    std::string file = fmt::format("{}/m{}", dir, counter++);
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return failErrno("create " + file);
    char buf[1 << 16];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) {
      if (::write(fd, buf, static_cast<size_t>(n)) != n) {
        int err = errno;
        ::close(fd);
        return failErrno("write " + file, err);
      }
    }
    ::close(fd);
    if (n < 0) return fail(Error::invalid(fmt::format("{}: {}: {}", tarPath, name, archive_error_string(a.get()))));
    files[name] = file;
  }
  for (int round = 0; round < 8; ++round)
    for (const auto& [name, target] : symlinks)
      if (!files.count(name) && files.count(target)) files[name] = files[target];
  return files;
}

}  // namespace ferry::images
