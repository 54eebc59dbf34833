#include "core/image/image.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

#include "core/image/xxh3_avx2.h"
#include "core/sys/io.h"
#include "core/sys/progress.h"

namespace cryo::image {
namespace {

constexpr char kMagic[8] = {'C', 'R', 'Y', 'O', 'I', 'M', 'G', '\0'};
constexpr uint32_t kTrailerMark = 0xffffffffu;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string header(Kind kind) {
  std::string out(kMagic, sizeof kMagic);
  put_u32(out, kFormatVersion);
  put_u32(out, static_cast<uint32_t>(kind));
  return out;
}

Status check_header(Kind kind, std::string_view bytes) {
  if (bytes.size() < kHeaderSize) return Error(EINVAL, "truncated: shorter than the image header");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return Error(EINVAL, "not a cryo image (bad magic)");
  uint32_t version = get_u32(bytes.data() + 8);
  if (version < kOldestFormatVersion || version > kFormatVersion)
    return Error(EINVAL, "image format version " + std::to_string(version) + " is not supported (this cryo reads " +
                             std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) + ")");
  uint32_t got = get_u32(bytes.data() + 12);
  if (got != static_cast<uint32_t>(kind))
    return Error(EINVAL, std::string("holds a ") +
                             (got >= 1 && got <= 6 ? kind_name(static_cast<Kind>(got)) : "unknown") +
                             " image where a " + kind_name(kind) + " image belongs");
  return {};
}

std::string tmp_name(const std::string& name) { return "." + name + ".tmp"; }

// No message file is larger than one record of the largest size, framed.
constexpr uint64_t kMaxMessageFileSize = kHeaderSize + 4 + kMaxRecordSize + 4 + 8;

// Opens a file of an image directory, which may come from anywhere: only a
// regular file will do. A FIFO would block the open or the read forever, a
// device such as /dev/zero never ends (O_NONBLOCK: the open of a FIFO
// returns, and fstat tells what it is).
Result<UniqueFd> open_image_file(const std::string& path, struct stat* st) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_NONBLOCK));
  if (::fstat(fd.get(), st) < 0) return errno_error("stat " + path);
  if (!S_ISREG(st->st_mode))
    return Error(EINVAL, path + " is not a regular file (an image directory holds only regular files)");
  return fd;
}

// The whole of a message file, refused unread if no message file is that large.
Result<std::string> read_message_file(const std::string& path) {
  struct stat st;
  CRYO_ASSIGN(UniqueFd fd, open_image_file(path, &st));
  if (static_cast<uint64_t>(st.st_size) > kMaxMessageFileSize)
    return Error(EFBIG, path + " has " + std::to_string(st.st_size) + " bytes, more than any image file");
  return read_fd(fd.get()).wrap(path);
}

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kInventory: return "inventory";
    case Kind::kTree: return "tree";
    case Kind::kCore: return "core";
    case Kind::kMm: return "mm";
    case Kind::kFiles: return "files";
    case Kind::kPages: return "pages";
  }
  return "unknown";
}

// The library's XXH3 (SSE2 on x86-64) or the AVX2 build (xxh3_avx2.h), which
// give the same values: one table each, chosen once for this CPU.
struct Xxh3Build {
  uint64_t (*whole)(const void* data, size_t size);
  void* (*create_state)();
  void (*free_state)(void* state);
  void (*reset)(void* state);
  void (*update)(void* state, const void* data, size_t size);
  uint64_t (*digest)(const void* state);

  static const Xxh3Build& for_this_cpu() {
    static constexpr Xxh3Build library = {
        [](const void* data, size_t size) -> uint64_t { return XXH3_64bits(data, size); },
        []() -> void* { return XXH3_createState(); },
        [](void* state) { XXH3_freeState(static_cast<XXH3_state_t*>(state)); },
        [](void* state) { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state)); },
        [](void* state, const void* data, size_t size) {
          XXH3_64bits_update(static_cast<XXH3_state_t*>(state), data, size);
        },
        [](const void* state) -> uint64_t { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state)); },
    };
    static constexpr Xxh3Build with_avx2 = {
        avx2::xxh3, avx2::create_state, avx2::free_state, avx2::reset, avx2::update, avx2::digest,
    };
    static const Xxh3Build* chosen = [] {
      __builtin_cpu_init();  // (static constructors may run before libgcc's)
      return __builtin_cpu_supports("avx2") ? &with_avx2 : &library;
    }();
    return *chosen;
  }
};

uint64_t checksum(const void* data, size_t size) { return Xxh3Build::for_this_cpu().whole(data, size); }

Checksummer::Checksummer() : xxh3_(&Xxh3Build::for_this_cpu()), state_(xxh3_->create_state()) {
  if (!state_) std::abort();  // out of memory for 600 bytes
  reset();
}
Checksummer::~Checksummer() { xxh3_->free_state(state_); }
void Checksummer::reset() { xxh3_->reset(state_); }
void Checksummer::update(const void* data, size_t size) { xxh3_->update(state_, data, size); }
uint64_t Checksummer::digest() const { return xxh3_->digest(state_); }

namespace {

Result<uint64_t> checksum_fd(int fd, const std::string& path) {
  // Read through a small buffer, not mapped: the libraries a process maps are
  // hashed at every dump and restore, and a mapping's page faults cost 3-4
  // times the hashing under this kind of hypervisor (libc: 1.1 ms against 0.3).
  thread_local std::unique_ptr<uint8_t[]> buf;
  constexpr size_t kSize = 64u << 10;
  if (!buf) buf = std::make_unique_for_overwrite<uint8_t[]>(kSize);
  Checksummer sum;
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kSize);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + path);
    if (n == 0) break;
    sum.update(buf.get(), static_cast<size_t>(n));
  }
  return sum.digest();
}

// Filesystems whose inode times the local kernel sets on every change (not
// a network or FUSE filesystem, whose server says what they are).
bool keeps_own_times(int fd) {
  struct statfs fs;
  if (::fstatfs(fd, &fs) < 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0x01021994:  // tmpfs
    case 0x794C7630:  // overlayfs
    case 0x73717368:  // squashfs
    case 0xE0F5E1E2:  // erofs
    case 0xF2F52010:  // f2fs
      return true;
    default:
      return false;
  }
}

std::string time_stamp(const struct timespec& t) {
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

}  // namespace

Result<uint64_t> file_checksum(const std::string& path) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  return checksum_fd(fd.get(), path);
}

Result<uint64_t> mapped_file_checksum(const std::string& path, const std::string& cache_dir) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return errno_error("fstat " + path);
  if (!S_ISREG(st.st_mode) || !keeps_own_times(fd.get())) return checksum_fd(fd.get(), path);
  std::string entry = cache_dir + "/" + std::to_string(st.st_dev) + "-" + std::to_string(st.st_ino);
  std::string stamp = std::to_string(st.st_size) + " " + time_stamp(st.st_mtim) + " " + time_stamp(st.st_ctim) + " ";
  if (auto text = read_file(entry); text.ok() && text->starts_with(stamp) && text->ends_with("\n")) {
    char* end = nullptr;
    std::string hex_sum = text->substr(stamp.size(), text->size() - stamp.size() - 1);
    uint64_t sum = std::strtoull(hex_sum.c_str(), &end, 16);
    if (!hex_sum.empty() && end && *end == '\0') return sum;
  }
  CRYO_ASSIGN(uint64_t sum, checksum_fd(fd.get(), path));
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (st.st_ctim.tv_sec + 2 > now.tv_sec || st.st_mtim.tv_sec + 2 > now.tv_sec) return sum;  // too fresh to trust
  // A cache that cannot be written is no error.
  if (::mkdir(cache_dir.c_str(), 0700) < 0 && errno != EEXIST) return sum;
  char hex_sum[17];
  std::snprintf(hex_sum, sizeof hex_sum, "%016llx", static_cast<unsigned long long>(sum));
  (void)write_file_atomic(entry, stamp + hex_sum + "\n", Durability::kCacheOnly);
  return sum;
}

std::string core_name(int pid) { return "core-" + std::to_string(pid) + ".img"; }
std::string mm_name(int pid) { return "mm-" + std::to_string(pid) + ".img"; }

std::string encode(Kind kind, const std::vector<const google::protobuf::MessageLite*>& messages) {
  std::string out = header(kind);
  for (const auto* m : messages) {
    std::string body = m->SerializeAsString();
    put_u32(out, static_cast<uint32_t>(body.size()));
    out += body;
  }
  put_u32(out, kTrailerMark);
  put_u64(out, checksum(out.data(), out.size()));
  return out;
}

Result<std::vector<std::string>> decode(Kind kind, std::string_view bytes) {
  CRYO_TRY(check_header(kind, bytes));
  if (bytes.size() < kHeaderSize + 12) return Error(EINVAL, "truncated: no checksum trailer");
  // Validate the framing first, then the checksum, then hand out records.
  std::vector<std::string_view> records;
  size_t pos = kHeaderSize;
  for (;;) {
    if (bytes.size() - pos < 4) return Error(EINVAL, "truncated inside a record length");
    uint32_t len = get_u32(bytes.data() + pos);
    pos += 4;
    if (len == kTrailerMark) break;
    if (len > kMaxRecordSize) return Error(EINVAL, "record of " + std::to_string(len) + " bytes is too large");
    if (bytes.size() - pos < len) return Error(EINVAL, "truncated inside a record");
    records.push_back(bytes.substr(pos, len));
    pos += len;
  }
  if (bytes.size() - pos != 8)
    return Error(EINVAL, bytes.size() - pos < 8 ? "truncated checksum" : "bytes after the checksum");
  uint64_t want = get_u64(bytes.data() + pos);
  if (checksum(bytes.data(), pos) != want) return Error(EINVAL, "checksum mismatch (the image is corrupt)");
  std::vector<std::string> out;
  out.reserve(records.size());
  for (auto r : records) out.emplace_back(r);
  return out;
}

Status decode_one(Kind kind, std::string_view bytes, google::protobuf::MessageLite* out) {
  CRYO_ASSIGN(auto records, decode(kind, bytes));
  if (records.size() != 1)
    return Error(EINVAL, "holds " + std::to_string(records.size()) + " messages where one belongs");
  if (!out->ParseFromString(records[0])) return Error(EINVAL, "message does not parse");
  return {};
}

// ---- PageWriter ----

std::string page_file_name(uint32_t file) {
  return file == 0 ? std::string(kPagesName) : "pages-" + std::to_string(file) + ".img";
}

namespace {
// kBufferSize zero bytes, for punch()'s writes where a filesystem has no
// holes and zero_runs()'s checksums: made at first use (every dump asks for
// zero_runs, few have any; 1 MiB zeroed and faulted in at each was ~0.5 ms
// of a tiny dump).
const std::vector<uint8_t>& zero_buffer() {
  static const std::vector<uint8_t> zeros(PageWriter::kBufferSize);
  return zeros;
}

// What every page file starts with: the image header, padded to where the
// page data starts.
std::string pages_header() {
  std::string head = header(Kind::kPages);
  head.resize(kPagesDataOffset, '\0');
  return head;
}
}  // namespace

Result<std::unique_ptr<PageWriter>> PageWriter::create(const std::string& dir) {
  std::unique_ptr<PageWriter> w(new PageWriter());
  w->dir_ = dir;
  CRYO_TRY(w->add_buffers(kBuffers));
  std::lock_guard lock(w->mu_);
  CRYO_TRY(w->add_file(false));
  return w;
}

Result<std::unique_ptr<PageWriter>> PageWriter::create(std::unique_ptr<PageSink> sink) {
  std::unique_ptr<PageWriter> w(new PageWriter());
  w->sink_ = std::move(sink);
  CRYO_TRY(w->add_buffers(kBuffers));
  std::lock_guard lock(w->mu_);
  CRYO_TRY(w->add_file(false));
  return w;
}

Status PageWriter::add_file(bool reserved) {
  auto file = std::make_unique<File>();
  std::string head = pages_header();
  if (sink_) {
    struct iovec piece = {head.data(), head.size()};
    CRYO_TRY(sink_->write(0, &piece, 1));
  } else {
    std::string path = dir_ + "/" + tmp_name(page_file_name(static_cast<uint32_t>(files_.size())));
    CRYO_ASSIGN(file->fd, open_file(path, O_RDWR | O_CREAT | O_TRUNC, 0600));  // read back (reserve)
    CRYO_TRY(write_all(file->fd.get(), head).wrap(path));
  }
  file->end = kPagesDataOffset;
  File* f = file.get();
  files_.push_back(std::move(file));
  if (reserved)
    reserved_ = static_cast<int>(files_.size() - 1);  // written by someone else: no writer thread
  else
    threads_.emplace_back([this, f] { run(f); });
  return {};
}

int PageWriter::fd_of(uint32_t file) const {
  std::lock_guard lock(mu_);
  return file < files_.size() ? files_[file]->fd.get() : -1;  // (the sink's is -1)
}

Status PageWriter::add_buffers(size_t count) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < count; i++) {
    void* b = ::mmap(nullptr, kBufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) return errno_error("memory for the page writer");
    storage_.push_back(static_cast<uint8_t*>(b));
    populated_.push_back(0);
    free_.push_back(storage_.back());
  }
  return {};
}

Status PageWriter::add_readers(unsigned readers) {
  size_t buffers = kBuffers * std::max(readers, 1u);
  if (buffers > storage_.size()) CRYO_TRY(add_buffers(buffers - storage_.size()));
  if (sink_) return {};
  std::lock_guard lock(mu_);
  while (files_.size() - (reserved_ >= 0 ? 1 : 0) < std::max(readers, 1u)) CRYO_TRY(add_file(false));
  return {};
}

PageWriter::~PageWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (uint8_t* b : storage_) ::munmap(b, kBufferSize);
}

Status PageWriter::write_job(const File& file, Job& job) {
  if (sink_) return sink_->write(job.offset, job.pieces.data(), job.pieces.size());
  uint64_t at = job.offset;
  size_t done = 0;
  while (done < job.pieces.size()) {
    size_t n = std::min<size_t>(job.pieces.size() - done, IOV_MAX);
    ssize_t got = ::pwritev(file.fd.get(), job.pieces.data() + done, static_cast<int>(n), static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? errno_error("write a page file") : Error(EIO, "write of a page file wrote nothing");
    at += static_cast<uint64_t>(got);
    // Step past what was written (a short write stops anywhere).
    for (size_t left = static_cast<size_t>(got); left > 0;) {
      auto& piece = job.pieces[done];
      if (left >= piece.iov_len) {
        left -= piece.iov_len;
        done++;
      } else {
        piece.iov_base = static_cast<char*>(piece.iov_base) + left;
        piece.iov_len -= left;
        left = 0;
      }
    }
  }
  return {};
}

void PageWriter::run(File* file) {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !file->queue.empty(); });
    if (file->queue.empty()) return;
    Job job = std::move(file->queue.front());
    file->queue.pop_front();
    bool failed = error_.has_value();
    lock.unlock();
    Status st;
    if (!failed) st = write_job(*file, job);
    // Writeback starts now, while the next buffers are read, and not all at
    // finish()'s fdatasync (tmpfs has none to do).
    if (!failed && st.ok() && !sink_)
      (void)::sync_file_range(file->fd.get(), static_cast<off_t>(job.offset), static_cast<off_t>(job.bytes),
                              SYNC_FILE_RANGE_WRITE);
    if (!failed && st.ok()) progress::add_bytes(job.bytes);
    lock.lock();
    if (!st.ok() && !error_) error_ = std::move(st).error();
    file->waiting -= job.bytes;
    free_.push_back(job.buffer);
    cv_.notify_all();
  }
}

uint8_t* PageWriter::buffer(size_t need) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  uint8_t* b = free_.back();
  free_.pop_back();
  size_t i = static_cast<size_t>(std::find(storage_.begin(), storage_.end(), b) - storage_.begin());
  constexpr size_t kPage = 4096;
  need = (std::min(need, kBufferSize) + kPage - 1) / kPage * kPage;
  if (need > populated_[i]) {
    // Only what this caller fills: populating whole buffers cost a dump of
    // `sleep` 2048 page faults for its 27 pages. (Unlocked: the buffer is
    // this caller's alone, and another reader may take one meanwhile.)
    size_t from = populated_[i];
    populated_[i] = need;
    lock.unlock();
    (void)::madvise(b + from, need - from, MADV_POPULATE_WRITE);
  }
  return b;
}

Result<PagePlace> PageWriter::submit(uint8_t* buffer, std::vector<struct iovec> pieces) {
  std::lock_guard lock(mu_);
  if (error_) {
    free_.push_back(buffer);
    cv_.notify_all();
    return *error_;
  }
  // The file with the least to write (the first of those: a small dump
  // keeps to pages.img). Taken and queued together: each queue is in file
  // order (a sink's writer relies on it).
  uint32_t pick = 0;
  bool found = false;
  for (uint32_t i = 0; i < files_.size(); i++)
    if (static_cast<int>(i) != reserved_ && (!found || files_[i]->waiting < files_[pick]->waiting)) {
      pick = i;
      found = true;
    }
  File& f = *files_[pick];
  uint64_t bytes = 0;
  for (const auto& piece : pieces) bytes += piece.iov_len;
  PagePlace place{pick, f.end};
  f.end += bytes;
  f.waiting += bytes;
  f.queue.push_back({buffer, std::move(pieces), place.offset, bytes});
  cv_.notify_all();
  return place;
}

Result<std::pair<uint32_t, int>> PageWriter::reserve_file() {
  std::lock_guard lock(mu_);
  if (error_) return *error_;
  if (sink_) return Error(EINVAL, "pages.img goes to a page server: no page file can be reserved");
  if (reserved_ < 0) CRYO_TRY(add_file(true));
  return std::pair<uint32_t, int>{static_cast<uint32_t>(reserved_), files_[static_cast<size_t>(reserved_)]->fd.get()};
}

Result<uint64_t> PageWriter::reserve(uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (error_) return *error_;
  if (reserved_ < 0) return Error(EINVAL, "no page file is reserved (reserve_file first)");
  File& f = *files_[static_cast<size_t>(reserved_)];
  uint64_t at = f.end;
  f.end += bytes;
  return at;
}

void PageWriter::written(uint64_t offset, uint64_t bytes) {
  int fd = fd_of(static_cast<uint32_t>(reserved_));
  (void)::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(bytes), SYNC_FILE_RANGE_WRITE);
  progress::add_bytes(bytes);
}

Status PageWriter::read_back(uint32_t file, uint64_t offset, uint8_t* into, size_t bytes) const {
  int fd = fd_of(file);
  if (fd < 0) return Error(EINVAL, "no local page file " + std::to_string(file) + " to read back");
  return pread_all(fd, into, bytes, static_cast<off_t>(offset)).wrap("read back " + page_file_name(file));
}

void PageWriter::punch(uint32_t file, uint64_t offset, uint64_t bytes) {
  int fd = fd_of(file);
  if (!bytes || fd < 0) return;
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) < 0) {
    // No holes here (EOPNOTSUPP and the like): zeros written over what was
    // there (a page a fault cut short), so that the span is what zero_runs()
    // says. Zero pages that were written stay as they are.
    const std::vector<uint8_t>& zeros = zero_buffer();
    for (uint64_t at = offset; at < offset + bytes; at += zeros.size()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), offset + bytes - at));
      if (auto st = pwrite_all(fd, zeros.data(), n, static_cast<off_t>(at)); !st.ok()) {
        std::lock_guard lock(mu_);
        if (!error_) error_ = std::move(st).error().wrap("zeroing unused bytes of " + page_file_name(file));
        return;
      }
    }
  }
  std::lock_guard lock(mu_);
  files_[file]->zeroed.emplace_back(offset, offset + bytes);
}

std::vector<PageRun> PageWriter::zero_runs() const {
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> by_file;
  {
    std::lock_guard lock(mu_);
    for (const auto& f : files_) by_file.push_back(f->zeroed);
  }
  constexpr uint64_t kPage = 4096;
  std::vector<PageRun> out;
  for (uint32_t file = 0; file < by_file.size(); file++) {
    auto& spans = by_file[file];
    std::sort(spans.begin(), spans.end());
    uint64_t end = 0;
    size_t first = out.size();
    for (const auto& [from, to] : spans) {
      if (out.size() > first && from == end) {
        out.back().set_npages(out.back().npages() + (to - from) / kPage);
      } else {
        out.emplace_back();
        out.back().set_file(file);
        out.back().set_offset(from);
        out.back().set_npages((to - from) / kPage);
      }
      end = to;
    }
  }
  for (auto& run : out) {
    const std::vector<uint8_t>& zeros = zero_buffer();
    Checksummer sum;  // streaming: the same digest whatever the pieces
    for (uint64_t left = run.npages() * kPage; left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeros.size()));
      sum.update(zeros.data(), n);
      left -= n;
    }
    run.set_xxh3(sum.digest());
  }
  return out;
}

std::vector<uint64_t> PageWriter::file_sizes() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> out;
  for (const auto& f : files_) out.push_back(f->end);
  return out;
}

uint64_t PageWriter::data_bytes() const {
  uint64_t bytes = 0;
  for (uint64_t size : file_sizes()) bytes += size - kPagesDataOffset;
  return bytes;
}

Status PageWriter::drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] {
    for (const auto& f : files_)
      if (!f->queue.empty()) return false;
    return free_.size() == storage_.size();
  });
  if (error_) return *error_;
  return {};
}

Status PageWriter::finish() {
  CRYO_TRY(drain());
  std::lock_guard lock(mu_);
  if (sink_) {
    auto st = sink_->finish(files_[0]->end);
    if (!st.ok()) error_ = st.error();
    return st;
  }
  for (uint32_t i = 0; i < files_.size(); i++) {
    const File& f = *files_[i];
    // A reserved span whose writer stopped short at the end of the file:
    // the file still ends where file_sizes() says.
    if (struct stat st; ::fstat(f.fd.get(), &st) == 0 && static_cast<uint64_t>(st.st_size) < f.end &&
                        ::ftruncate(f.fd.get(), static_cast<off_t>(f.end)) < 0) {
      error_ = errno_error("ftruncate " + page_file_name(i));
      return *error_;
    }
    if (::fdatasync(f.fd.get()) < 0) {
      error_ = errno_error("fdatasync " + page_file_name(i));
      return *error_;
    }
  }
  return {};
}

// ---- ImageDirWriter ----

Result<ImageDirWriter> ImageDirWriter::create(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) {
    if (errno != ENOENT) return errno_error("image directory " + dir);
    if (::mkdir(dir.c_str(), 0700) < 0) return errno_error("create image directory " + dir);
  } else if (!S_ISDIR(st.st_mode)) {
    return Error(ENOTDIR, "image directory " + dir);
  }
  ImageDirWriter w;
  w.dir_ = dir;
  return w;
}

ImageDirWriter::~ImageDirWriter() {
  if (committed_ || dir_.empty()) return;
  if (pages_) page_files_ = pages_->file_sizes().size();
  pages_.reset();
  for (auto& [name, size] : written_) ::unlink((dir_ + "/" + tmp_name(name)).c_str());
  for (uint32_t i = 0; i < page_files_; i++) ::unlink((dir_ + "/" + tmp_name(page_file_name(i))).c_str());
}

Status ImageDirWriter::write(const std::string& name, Kind kind, const google::protobuf::MessageLite& message) {
  std::string bytes = encode(kind, {&message});
  std::string path = dir_ + "/" + tmp_name(name);
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  CRYO_TRY(write_all(fd.get(), bytes).wrap("write " + path));
  // Its writeback starts now; commit() waits for it.
  (void)::sync_file_range(fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
  written_.emplace_back(name, bytes.size());
  return {};
}

Result<PageWriter*> ImageDirWriter::pages() {
  if (!pages_ && sink_) {
    CRYO_ASSIGN(pages_, PageWriter::create(std::move(sink_)));
    remote_pages_ = true;
  } else if (!pages_) {
    CRYO_ASSIGN(pages_, PageWriter::create(dir_));
  }
  return pages_.get();
}

Status ImageDirWriter::commit(cryo::image::Inventory inventory) {
  if (!pages_) CRYO_TRY(pages().wrap("pages.img"));
  CRYO_TRY(pages_->finish());
  auto sizes = pages_->file_sizes();
  page_files_ = sizes.size();
  pages_.reset();
  std::vector<std::string> page_names;  // finish() synced them
  for (uint32_t i = 0; i < sizes.size(); i++) {
    page_names.push_back(page_file_name(i));
    written_.emplace_back(page_names.back(), sizes[i]);
  }
  inventory.set_page_files(static_cast<uint32_t>(sizes.size()));
  inventory.set_format_version(kFormatVersion);
  inventory.clear_files();
  for (auto& [name, size] : written_) {
    auto* f = inventory.add_files();
    f->set_name(name);
    f->set_size(size);
  }
  // Every file is on its storage before the inventory names it.
  for (auto& [name, size] : written_) {
    if (std::find(page_names.begin(), page_names.end(), name) != page_names.end()) continue;
    std::string path = dir_ + "/" + tmp_name(name);
    CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
    if (::fdatasync(fd.get()) < 0) return errno_error("fdatasync " + path);
  }
  // An image that was here stays whole until this one commits: its inventory
  // goes first (from then on the directory holds no complete image), then
  // the new files take their names, the new inventory comes last, and files
  // only the old image had are removed.
  std::vector<std::string> stale;
  if (auto old_bytes = read_file(dir_ + "/" + kInventoryName); old_bytes.ok()) {
    cryo::image::Inventory old;
    if (decode_one(Kind::kInventory, *old_bytes, &old).ok())
      for (const auto& f : old.files()) stale.push_back(f.name());
    if (::unlink((dir_ + "/" + kInventoryName).c_str()) < 0) return errno_error("remove the old inventory");
  }
  for (auto& [name, size] : written_) {
    // The page server holds this one (it may write into this very
    // directory); a stale local copy fails the size and checksum checks.
    if (remote_pages_ && name == kPagesName) continue;
    std::string from = dir_ + "/" + tmp_name(name), to = dir_ + "/" + name;
    if (::rename(from.c_str(), to.c_str()) < 0) return errno_error("rename " + from);
  }
  std::string bytes = encode(Kind::kInventory, {&inventory});
  CRYO_TRY(write_file_atomic(dir_ + "/" + kInventoryName, bytes));
  for (const auto& name : stale) {
    bool kept = false;
    for (const auto& [n, size] : written_) kept = kept || n == name;
    if (!kept && name.find('/') == std::string::npos && !name.empty() && name[0] != '.')
      ::unlink((dir_ + "/" + name).c_str());
  }
  // Make the renames durable too.
  if (auto d = open_file(dir_, O_RDONLY | O_DIRECTORY); d.ok()) ::fsync(d->get());
  committed_ = true;
  return {};
}

// ---- ImageDirReader ----

Result<ImageDirReader> ImageDirReader::open(const std::string& dir) {
  CRYO_ASSIGN(ImageDirReader r, open_flat(dir));
  if (!r.inventory_.parent_image().empty()) CRYO_TRY(r.open_parents());
  return r;
}

Result<ImageDirReader> ImageDirReader::open_flat(const std::string& dir) {
  ImageDirReader r;
  r.dir_ = dir;
  auto bytes = read_message_file(dir + "/" + kInventoryName);
  if (!bytes.ok()) {
    if (bytes.error().code() == ENOENT)
      return Error(ENOENT, dir + " holds no complete image (inventory.img is missing)");
    return std::move(bytes).error();
  }
  CRYO_TRY(decode_one(Kind::kInventory, *bytes, &r.inventory_).wrap(dir + "/inventory.img"));
  // Every listed file must be there with the size the dump wrote.
  for (const auto& f : r.inventory_.files()) {
    if (f.name().empty() || f.name().find('/') != std::string::npos || f.name()[0] == '.')
      return Error(EINVAL, dir + "/inventory.img names a bad file '" + f.name() + "'");
    struct stat st;
    std::string path = dir + "/" + f.name();
    if (::stat(path.c_str(), &st) < 0) return errno_error("image file " + path);
    if (static_cast<uint64_t>(st.st_size) != f.size())
      return Error(EINVAL, "image file " + path + " has " + std::to_string(st.st_size) + " bytes, the dump wrote " +
                               std::to_string(f.size()) + " (truncated or changed)");
  }
  uint32_t files = std::max(r.inventory_.page_files(), 1u);
  if (r.inventory_.format_version() < 2 && files != 1)
    return Error(EINVAL, dir + "/inventory.img: an image of format version 1 has pages.img alone");
  for (uint32_t i = 0; i < files; i++) {
    std::string name = page_file_name(i), path = dir + "/" + name;
    if (i > 0 && !r.has(name))
      return Error(EINVAL, dir + "/inventory.img: " + std::to_string(files) + " page files, but " + name +
                               " is not among its files");
    struct stat st;
    CRYO_ASSIGN(UniqueFd fd, open_image_file(path, &st));
    Mapped m{nullptr, static_cast<uint64_t>(st.st_size)};
    if (m.size < kPagesDataOffset) return Error(EINVAL, path + ": truncated header");
    void* map = ::mmap(nullptr, m.size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) return errno_error("mmap " + path);
    m.data = static_cast<const uint8_t*>(map);
    r.page_files_.push_back(m);
    CRYO_TRY(check_header(Kind::kPages, std::string_view(reinterpret_cast<const char*>(m.data), kHeaderSize))
                 .wrap(path));
    for (size_t k = kHeaderSize; k < kPagesDataOffset; k++)
      if (m.data[k] != 0) return Error(EINVAL, path + ": the header padding is not zero (corrupt)");
  }
  return r;
}

// An incremental image names its parent by a path relative to itself (as
// CRIU's `parent` link); the parent's inventory must be the one the dump
// read, and so on up the chain. Parents are opened flat, without their own
// chains, which this image's chain lists.
Status ImageDirReader::open_parents() {
  constexpr size_t kMaxDepth = 64;
  const ImageDirReader* child = this;
  while (!child->inventory_.parent_image().empty()) {
    const std::string& name = child->inventory_.parent_image();
    std::string path = name[0] == '/' ? name : child->dir_ + "/" + name;
    std::string what = "parent image " + path + " (named by " + child->dir_ + "/inventory.img)";
    if (parents_.size() == kMaxDepth) return Error(ELOOP, what + ": the chain of parents is longer than 64 images");
    auto sum = file_checksum(path + "/" + kInventoryName);
    if (!sum.ok()) return std::move(sum).error().wrap(what + " is missing or incomplete");
    if (*sum != child->inventory_.parent_inventory_xxh3())
      return Error(EINVAL, what + " is not the image this one was dumped against (its inventory changed)");
    auto opened = open_flat(path);
    if (!opened.ok()) return std::move(opened).error().wrap(what);
    parents_.push_back(std::make_unique<ImageDirReader>(std::move(*opened)));
    child = parents_.back().get();
  }
  return {};
}

const ImageDirReader* ImageDirReader::level(uint32_t n) const {
  if (n == 0) return this;
  return n <= parents_.size() ? parents_[n - 1].get() : nullptr;
}

Result<const uint8_t*> ImageDirReader::run_bytes(const PageRun& run) const {
  const ImageDirReader* at = level(run.level());
  if (!at) return Error(EINVAL, "a page run names parent image " + std::to_string(run.level()) + ", beyond the chain");
  return at->page_run(run);
}

ImageDirReader::ImageDirReader(ImageDirReader&& other) noexcept
    : parents_(std::move(other.parents_)),
      dir_(std::move(other.dir_)),
      inventory_(std::move(other.inventory_)),
      page_files_(std::exchange(other.page_files_, {})) {}

ImageDirReader::~ImageDirReader() {
  for (const auto& m : page_files_) ::munmap(const_cast<uint8_t*>(m.data), m.size);
}

uint64_t ImageDirReader::pages_size() const {
  uint64_t bytes = 0;
  for (const auto& m : page_files_) bytes += m.size;
  return bytes;
}

bool ImageDirReader::has(const std::string& name) const {
  for (const auto& f : inventory_.files())
    if (f.name() == name) return true;
  return false;
}

Status ImageDirReader::read(const std::string& name, Kind kind, google::protobuf::MessageLite* out) const {
  if (!has(name)) return Error(ENOENT, dir_ + ": the inventory lists no " + name);
  std::string path = dir_ + "/" + name;
  CRYO_ASSIGN(std::string bytes, read_message_file(path));
  return decode_one(kind, bytes, out).wrap(path);
}

Result<const uint8_t*> ImageDirReader::page_run(uint32_t file, uint64_t offset, uint64_t size) const {
  if (file >= page_files_.size())
    return Error(EINVAL, "a page run names page file " + std::to_string(file) + ", and the image has " +
                             std::to_string(page_files_.size()));
  const Mapped& m = page_files_[file];
  if (offset < kPagesDataOffset || offset > m.size || size > m.size - offset)
    return Error(EINVAL, page_file_name(file) + ": a page run lies outside the file (offset " +
                             std::to_string(offset) + ")");
  return m.data + offset;
}

Result<const uint8_t*> ImageDirReader::checked_page_run(uint32_t file, uint64_t offset, uint64_t size,
                                                        uint64_t expected) const {
  CRYO_ASSIGN(const uint8_t* p, page_run(file, offset, size));
  // The hash faults the pages in as it reads (the kernel maps 64 KiB around
  // each fault). Threads testing runs at once scale so; MADV_POPULATE_READ
  // first did not (it marks each page accessed, under the LRU's lock):
  // testing 512 MiB took 27-33 ms against 43-61.
  if (checksum(p, size) != expected)
    return Error(EINVAL, page_file_name(file) + ": checksum mismatch at offset " + std::to_string(offset) +
                             " (the image is corrupt)");
  return p;
}

namespace {
constexpr uint64_t kPageBytes = 4096;
// A run's bytes; where npages is out of all reason, more than any page file
// holds (the bounds check refuses it).
uint64_t run_size(const PageRun& run) {
  return run.npages() > (~0ULL / kPageBytes) ? ~0ULL : run.npages() * kPageBytes;
}
}  // namespace

Result<const uint8_t*> ImageDirReader::page_run(const PageRun& run) const {
  return page_run(run.file(), run.offset(), run_size(run));
}

Result<const uint8_t*> ImageDirReader::checked_page_run(const PageRun& run) const {
  return checked_page_run(run.file(), run.offset(), run_size(run), run.xxh3());
}

}  // namespace cryo::image
