// The image directory. All image I/O goes through here: modules hand over
// protobuf messages or pages and never open image files themselves.
//
// A message file is:   "CRYOIMG\0" | u32 version | u32 kind |
//                      { u32 length | message bytes }* |
//                      u32 0xffffffff | u64 XXH3-64 of every byte before it
// The page file is:    the same 16-byte header, padding to 4096, raw pages;
//                      every PageRun carries the checksum of its own bytes.
// Files are written under ".NAME.tmp" names and renamed when the dump
// commits; inventory.img is renamed last, so a directory with an
// inventory.img holds a complete image.
#pragma once

#include <google/protobuf/message_lite.h>

#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/image/proto/inventory.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::image {

// 2: pages in several page files (PageRun.file, Inventory.page_files).
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kOldestFormatVersion = 1;  // read still: it has pages.img alone
constexpr size_t kHeaderSize = 16;
constexpr size_t kPagesDataOffset = 4096;
constexpr size_t kMaxRecordSize = 256u << 20;

enum class Kind : uint32_t { kInventory = 1, kTree = 2, kCore = 3, kMm = 4, kFiles = 5, kPages = 6 };

const char* kind_name(Kind kind);
uint64_t checksum(const void* data, size_t size);

struct Xxh3Build;  // the functions of one build of XXH3 (image.cpp)

// checksum() of bytes that come in pieces: the same value as checksum() of
// them all at once, so that a run's checksum can be taken page by page while
// each page is still in the cache from its read.
class Checksummer {
 public:
  Checksummer();
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;
  void reset();
  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  const Xxh3Build* xxh3_;  // the build of XXH3 this CPU runs, chosen once
  void* state_;            // a streaming state of that build
};
// XXH3-64 of a whole file's contents.
Result<uint64_t> file_checksum(const std::string& path);

// The same for a file that processes map (an executable, a library, a
// locale), which every dump and every restore of them hashes (libc alone is
// 2 MB): remembered per inode in cache_dir and taken from there while the
// file keeps its size, mtime and ctime. Nothing writes a file without moving
// its ctime, which cannot be set back; a file changed less than 2 s before it
// is hashed is not remembered (a change in the same clock tick would not show),
// nor one on a filesystem other than the local kinds whose times the kernel
// keeps itself. Without a usable cache_dir the file is hashed as by file_checksum.
inline constexpr const char* kChecksumCacheDir = "/run/cryo-checksums";
Result<uint64_t> mapped_file_checksum(const std::string& path, const std::string& cache_dir = kChecksumCacheDir);

// Encodes a whole message file in memory (used by the writer and by tests).
std::string encode(Kind kind, const std::vector<const google::protobuf::MessageLite*>& messages);

// Decodes a whole message file: checks magic, version, kind, every length and
// the checksum before any message is handed out.
Result<std::vector<std::string>> decode(Kind kind, std::string_view bytes);

// Parses exactly one message of a file.
Status decode_one(Kind kind, std::string_view bytes, google::protobuf::MessageLite* out);

// Where the bytes of pages.img go when not to a local file: a page server
// (core/pageserver/). Writes come in order, each at the offset the last one
// ended; the sink may batch them, but finish() returns only once the far side
// holds the whole file durably, so that a dump commits nothing before that.
class PageSink {
 public:
  virtual ~PageSink() = default;
  virtual Status write(uint64_t offset, const struct iovec* pieces, size_t count) = 0;
  virtual Status finish(uint64_t size) = 0;
};

// An image's pages are in one or more page files: pages.img (file 0), and
// pages-1.img, pages-2.img... (Inventory.page_files names how many). A run
// names its file (PageRun.file) and its offset there. Several files let
// several writers write at once: a filesystem takes a file's writes one at
// a time (tmpfs and ext4 hold the inode's lock through each), which kept two
// writers of one file at the speed of one.
std::string page_file_name(uint32_t file);
// Where submit() or reserve() put bytes: which page file, at what offset.
struct PagePlace {
  uint32_t file = 0;
  uint64_t offset = 0;
};
// Where a run's bytes are in its image (two runs of an image are one run
// where they are the same), comparable and ordered.
using RunPlace = std::pair<uint32_t, uint64_t>;
inline RunPlace place_of(const PageRun& run) { return {run.file(), run.offset()}; }

// Appends pages to the page files. Writing happens on threads of their own,
// so that reading the next pages out of a task overlaps writing the last
// ones: a caller fills a buffer from buffer() and submits pieces of it.
// Buffers are small enough that the writer copies out of the shared cache
// what the reader has just put there, not out of memory (8 MiB buffers cost
// a dump about 7% more CPU time); four per reader keep the writer busy
// between reads.
//
// Several threads may fill and submit buffers at once (add_readers first).
// Locally each reader adds a page file and a writer thread of its own, and
// a submit goes to the file with the least bytes waiting: the writers never
// wait for each other. A sink takes every write of pages.img in file order
// from one writer thread.
//
// A local page file can also be written by someone else (core/mm/task_write.h:
// a dumped task writes its own pages with pwritev on a copy of an fd):
// reserve_file() adds a file that no submit goes to, reserve() takes the
// next bytes of it, read_back() reads them back for their checksums, and
// punch() frees what no run names (the all-zero pages among them). The files
// are open read-write for that.
class PageWriter {
 public:
  static constexpr size_t kBufferSize = 1u << 20;
  static constexpr size_t kBuffers = 4;
  // Page files in dir, under temporary names (.pages.img.tmp...) until
  // ImageDirWriter::commit renames them.
  static Result<std::unique_ptr<PageWriter>> create(const std::string& dir);
  // Only pages.img, its bytes going to `sink` instead of a file.
  static Result<std::unique_ptr<PageWriter>> create(std::unique_ptr<PageSink> sink);
  ~PageWriter();

  // Makes room for `readers` threads filling buffers at once (kBuffers
  // each) and, locally, for as many page files and writer threads. Only
  // while no buffer is out.
  Status add_readers(unsigned readers);
  // A buffer of kBufferSize bytes to fill, its first `need` bytes populated
  // (faulted in with one call rather than a fault per page during the copy);
  // waits until one is free.
  uint8_t* buffer(size_t need);
  // Queues pieces of a buffer from buffer() to be written in this order, one
  // after the other in one file; the buffer comes back once they are.
  // Returns where the first piece goes. An earlier failed write is returned
  // here.
  Result<PagePlace> submit(uint8_t* buffer, std::vector<struct iovec> pieces);
  // Waits for every queued write, and locally until every file is on its
  // storage (fdatasync; writeback starts as each buffer is written, so this
  // waits only for the last ones): a dump kills the tree once its image
  // commits, and an image whose pages a crash can lose is no image.
  Status finish();
  // The same, for a writer that goes on after: a page sink is not finished.
  Status drain();
  // The page files' sizes, file 0 first.
  std::vector<uint64_t> file_sizes() const;
  // The bytes of pages in all of them (their headers left out).
  uint64_t data_bytes() const;
  // Whether the pages go to local files (not a sink).
  bool local() const { return !sink_; }

  // A local page file for another writer, which no submit goes to (made
  // by the first call): its number and its fd.
  Result<std::pair<uint32_t, int>> reserve_file();
  // Takes the next `bytes` of that file for the other writer: its offset.
  Result<uint64_t> reserve(uint64_t bytes);
  // The other writer wrote [offset, offset + bytes) of a reserved span: its
  // writeback starts now, as the writer threads start their own (else all
  // of it waits for finish(), and the writer for the dirty pages' throttle),
  // and the progress line counts it.
  void written(uint64_t offset, uint64_t bytes);
  // Reads `bytes` at offset of a page file (a reserved span once written).
  Status read_back(uint32_t file, uint64_t offset, uint8_t* into, size_t bytes) const;
  // Frees [offset, offset + bytes) of a reserved span that no run names:
  // the bytes read as zeros after (a hole, or zeros written where the
  // filesystem cannot punch one), and zero_runs() names them.
  void punch(uint32_t file, uint64_t offset, uint64_t bytes);
  // The spans punch() zeroed, as page runs with the checksum of their zeros
  // (by file, in file order, adjoining ones merged): the image lists them so
  // that no byte of a page file goes unchecked (a byte flipped in a hole
  // shows).
  std::vector<PageRun> zero_runs() const;

 private:
  struct Job {
    uint8_t* buffer;
    std::vector<struct iovec> pieces;
    uint64_t offset = 0;
    uint64_t bytes = 0;
  };
  struct File {
    UniqueFd fd;            // -1: the sink's
    uint64_t end = 0;       // where the next bytes go
    uint64_t waiting = 0;   // bytes queued, not yet written
    std::deque<Job> queue;  // in file order
    std::vector<std::pair<uint64_t, uint64_t>> zeroed;  // punch(): [offset, end)
  };
  PageWriter() = default;
  // Adds a page file (locally, else the sink's, pages.img) with its header
  // and a writer thread for it, or, reserved, none (reserve_file). Under mu_.
  Status add_file(bool reserved);
  int fd_of(uint32_t file) const;  // -1: no such local file
  Status add_buffers(size_t count);
  Status write_job(const File& file, Job& job);
  void run(File* file);

  std::string dir_;
  std::unique_ptr<PageSink> sink_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<File>> files_;
  int reserved_ = -1;  // reserve_file()'s, in files_ (-1: none yet): no submit goes there
  // Each buffer is populated as far as a caller has needed it: a page fault
  // costs far more than the page under a hypervisor's shadow paging (~15 us
  // here), the buffers take 6144 pages, and a tiny dump needs a few dozen.
  std::vector<uint8_t*> storage_;
  std::vector<size_t> populated_;  // bytes of storage_[i] populated
  std::vector<uint8_t*> free_;
  bool stopping_ = false;
  std::optional<Error> error_;
  std::vector<std::thread> threads_;
};

// Collects the files of a dump under temporary names and commits them.
class ImageDirWriter {
 public:
  static Result<ImageDirWriter> create(const std::string& dir);
  ImageDirWriter(ImageDirWriter&&) = default;
  ~ImageDirWriter();

  const std::string& dir() const { return dir_; }
  Status write(const std::string& name, Kind kind, const google::protobuf::MessageLite& message);
  Result<PageWriter*> pages();
  // pages.img goes to the sink (before pages() is first called); the image
  // directory then lists it without holding it.
  void set_page_sink(std::unique_ptr<PageSink> sink) { sink_ = std::move(sink); }
  // Makes every file durable, renames it into place, inventory.img last.
  Status commit(cryo::image::Inventory inventory);

 private:
  ImageDirWriter() = default;
  std::string dir_;
  std::vector<std::pair<std::string, uint64_t>> written_;  // name, size
  std::unique_ptr<PageWriter> pages_;
  size_t page_files_ = 1;  // the page writer's, once it is gone
  std::unique_ptr<PageSink> sink_;
  bool remote_pages_ = false;
  bool committed_ = false;
};

// Reads and validates the files of an image directory.
class ImageDirReader {
 public:
  // The page files are mapped, not read in: a page comes in as a checksum
  // test reads it (checked_page_run) or a restore copies it.
  static Result<ImageDirReader> open(const std::string& dir);
  ImageDirReader(ImageDirReader&& other) noexcept;
  ImageDirReader& operator=(ImageDirReader&&) = delete;
  ~ImageDirReader();

  const cryo::image::Inventory& inventory() const { return inventory_; }
  const std::string& dir() const { return dir_; }
  Status read(const std::string& name, Kind kind, google::protobuf::MessageLite* out) const;
  bool has(const std::string& name) const;

  // A run of a page file (mapped read-only), checked to lie inside it.
  Result<const uint8_t*> page_run(uint32_t file, uint64_t offset, uint64_t size) const;
  // The same, also checked against its checksum.
  Result<const uint8_t*> checked_page_run(uint32_t file, uint64_t offset, uint64_t size,
                                          uint64_t expected_checksum) const;
  // The same for a run as the image names it (file, offset, npages, xxh3).
  Result<const uint8_t*> page_run(const PageRun& run) const;
  Result<const uint8_t*> checked_page_run(const PageRun& run) const;
  // The bytes of all page files, headers included.
  uint64_t pages_size() const;
  // The bytes of a run, from this image or (run.level() > 0) from the image
  // of the chain of parents it names (bounds checked, not the checksum).
  Result<const uint8_t*> run_bytes(const PageRun& run) const;
  // An incremental image's chain: level 1 is its parent; nullptr past the end.
  const ImageDirReader* level(uint32_t n) const;
  size_t depth() const { return parents_.size(); }

 private:
  ImageDirReader() = default;
  static Result<ImageDirReader> open_flat(const std::string& dir);
  Status open_parents();
  std::vector<std::unique_ptr<ImageDirReader>> parents_;  // parent, grandparent...
  std::string dir_;
  cryo::image::Inventory inventory_;
  struct Mapped {
    const uint8_t* data = nullptr;
    uint64_t size = 0;
  };
  std::vector<Mapped> page_files_;  // pages.img, pages-1.img...
};

std::string core_name(int pid);
std::string mm_name(int pid);
constexpr const char* kInventoryName = "inventory.img";
constexpr const char* kTreeName = "tree.img";
constexpr const char* kFilesName = "files.img";
constexpr const char* kPagesName = "pages.img";

}  // namespace cryo::image
