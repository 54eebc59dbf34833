// PageWriter with several threads filling buffers at once (mm::PageCopies):
// every piece must land in the page file and at the offset its submit
// returned, each file must be its pieces with no gap or overlap, and a sink
// (a page server) must see them all in file order from one writer, since
// its stream has no offsets to reorder by.
#include "core/image/image.h"

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/sys/io.h"
#include "tests/temp_dir.h"

using namespace cryo;
using namespace cryo::image;

namespace {

constexpr size_t kPage = 4096;
constexpr int kReaders = 3, kBuffersEach = 40;

// Buffer `seq` of reader `reader`: 1 to 8 pages (in two pieces when it has
// more than one), each page all one byte saying whose it is.
size_t pages_of(int seq) { return 1 + static_cast<size_t>(seq % 8); }
uint8_t mark(int reader, int seq, size_t page) { return static_cast<uint8_t>(reader * 64 + seq + page * 7 + 1); }

struct Submitted {
  int reader, seq;
  PagePlace place;
};

// Every reader fills and submits its buffers; returns where each went.
std::vector<Submitted> fill_from_readers(PageWriter& w) {
  std::vector<Submitted> out;
  std::mutex mu;
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; r++)
    readers.emplace_back([&, r] {
      for (int seq = 0; seq < kBuffersEach; seq++) {
        size_t n = pages_of(seq);
        uint8_t* buf = w.buffer(n * kPage);
        for (size_t p = 0; p < n; p++) std::memset(buf + p * kPage, mark(r, seq, p), kPage);
        std::vector<struct iovec> pieces = {{buf, kPage}};
        if (n > 1) pieces.push_back({buf + kPage, (n - 1) * kPage});
        auto at = w.submit(buf, std::move(pieces));
        REQUIRE(at.ok());
        std::lock_guard lock(mu);
        out.push_back({r, seq, *at});
      }
    });
  for (auto& t : readers) t.join();
  return out;
}

// The data part of page file `file` (from kPagesDataOffset) holds each
// buffer submitted to it at its offset, and nothing else.
void check_layout(const std::string& bytes, uint32_t file, const std::vector<Submitted>& submitted) {
  uint64_t total = 0;
  for (const auto& s : submitted) {
    if (s.place.file != file) continue;
    size_t n = pages_of(s.seq);
    total += n * kPage;
    REQUIRE(s.place.offset >= kPagesDataOffset);
    REQUIRE(s.place.offset + n * kPage <= bytes.size());
    for (size_t p = 0; p < n; p++) {
      const char* page = bytes.data() + s.place.offset + p * kPage;
      for (size_t i = 0; i < kPage; i += 512) CHECK(static_cast<uint8_t>(page[i]) == mark(s.reader, s.seq, p));
    }
  }
  CHECK(bytes.size() == kPagesDataOffset + total);
}

std::string tmp_path(const std::string& dir, uint32_t file) { return dir + "/." + page_file_name(file) + ".tmp"; }

class RecordingSink : public PageSink {
 public:
  Status write(uint64_t offset, const struct iovec* pieces, size_t count) override {
    if (offset != bytes.size()) out_of_order++;  // placed at its offset all the same
    uint64_t end = offset;
    for (size_t i = 0; i < count; i++) end += pieces[i].iov_len;
    if (bytes.size() < end) bytes.resize(end);
    for (size_t i = 0; i < count; i++) {
      std::memcpy(bytes.data() + offset, pieces[i].iov_base, pieces[i].iov_len);
      offset += pieces[i].iov_len;
    }
    return {};
  }
  Status finish(uint64_t size) override {
    finished_at = size;
    return {};
  }
  std::string bytes;
  int out_of_order = 0;
  uint64_t finished_at = 0;
};

}  // namespace

TEST_CASE("pages from several readers land where their submit said, in a page file per reader") {
  testing::TempDir dir("page-writer");
  auto w = PageWriter::create(dir.path);
  REQUIRE(w.ok());
  CHECK((*w)->file_sizes().size() == 1);  // pages.img alone until there are more readers
  REQUIRE((*w)->add_readers(kReaders).ok());
  auto submitted = fill_from_readers(**w);
  REQUIRE((*w)->finish().ok());
  auto sizes = (*w)->file_sizes();
  REQUIRE(sizes.size() == kReaders);
  uint64_t data = 0;
  for (uint64_t size : sizes) data += size - kPagesDataOffset;
  CHECK((*w)->data_bytes() == data);
  w->reset();
  for (uint32_t file = 0; file < sizes.size(); file++) {
    auto bytes = read_file(tmp_path(dir.path, file));
    REQUIRE(bytes.ok());
    CHECK(bytes->size() == sizes[file]);
    CHECK(std::memcmp(bytes->data(), "CRYOIMG", 8) == 0);
    check_layout(*bytes, file, submitted);
  }
}

TEST_CASE("a sink gets the pages of several readers in file order") {
  auto sink = std::make_unique<RecordingSink>();
  RecordingSink* seen = sink.get();
  auto w = PageWriter::create(std::move(sink));
  REQUIRE(w.ok());
  REQUIRE((*w)->add_readers(kReaders).ok());
  auto submitted = fill_from_readers(**w);
  REQUIRE((*w)->finish().ok());
  CHECK(seen->out_of_order == 0);
  REQUIRE((*w)->file_sizes().size() == 1);
  CHECK(seen->finished_at == (*w)->file_sizes()[0]);
  check_layout(seen->bytes, 0, submitted);
}

// A page file reserved for another writer (a task writing its own pages,
// core/mm/task_write.h) takes no submit: its spans follow each other, it
// reads back what was written there, and a punched part reads as zeros,
// which zero_runs() names in that file.
TEST_CASE("a reserved page file is written by another writer, read back and punched") {
  testing::TempDir dir("page-writer-span");
  auto w = PageWriter::create(dir.path);
  REQUIRE(w.ok());
  auto reserved = (*w)->reserve_file();
  REQUIRE(reserved.ok());
  auto [file, fd] = *reserved;
  CHECK(file == 1);
  uint8_t* buf = (*w)->buffer(kPage);
  std::memset(buf, 1, kPage);
  auto before = (*w)->submit(buf, {{buf, kPage}});
  REQUIRE(before.ok());
  CHECK(before->file == 0);
  auto span = (*w)->reserve(4 * kPage);
  REQUIRE(span.ok());
  CHECK(*span == kPagesDataOffset);
  buf = (*w)->buffer(kPage);
  std::memset(buf, 3, kPage);
  auto after = (*w)->submit(buf, {{buf, kPage}});
  REQUIRE(after.ok());
  CHECK(after->file == 0);
  CHECK(after->offset == before->offset + kPage);
  auto next = (*w)->reserve(kPage);
  REQUIRE(next.ok());
  CHECK(*next == *span + 4 * kPage);
  // The other writer: its own fd of the file, as a task holds it.
  int other = ::dup(fd);
  REQUIRE(other >= 0);
  std::vector<uint8_t> mine(5 * kPage, 2);
  CHECK(::pwrite(other, mine.data(), mine.size(), static_cast<off_t>(*span)) == static_cast<ssize_t>(mine.size()));
  ::close(other);
  std::vector<uint8_t> back(5 * kPage);
  REQUIRE((*w)->read_back(file, *span, back.data(), back.size()).ok());
  CHECK(back == mine);
  (*w)->punch(file, *span + kPage, 2 * kPage);
  REQUIRE((*w)->finish().ok());
  auto zero = (*w)->zero_runs();
  REQUIRE(zero.size() == 1);
  CHECK(zero[0].file() == file);
  CHECK(zero[0].offset() == *span + kPage);
  CHECK(zero[0].npages() == 2);
  CHECK(zero[0].xxh3() == checksum(std::vector<uint8_t>(2 * kPage).data(), 2 * kPage));
  auto sizes = (*w)->file_sizes();
  REQUIRE(sizes.size() == 2);
  w->reset();
  auto pages = read_file(tmp_path(dir.path, 0));
  REQUIRE(pages.ok());
  REQUIRE(pages->size() == sizes[0]);
  CHECK(pages->size() == after->offset + kPage);
  CHECK(static_cast<uint8_t>((*pages)[before->offset]) == 1);
  CHECK(static_cast<uint8_t>((*pages)[after->offset]) == 3);
  auto written = read_file(tmp_path(dir.path, file));
  REQUIRE(written.ok());
  REQUIRE(written->size() == sizes[1]);
  CHECK(written->size() == *next + kPage);
  auto at = [&](uint64_t offset) { return static_cast<uint8_t>((*written)[offset]); };
  CHECK(at(*span) == 2);
  CHECK(at(*span + kPage) == 0);  // punched (the temporary directory's filesystem can)
  CHECK(at(*span + 3 * kPage - 1) == 0);
  CHECK(at(*span + 3 * kPage) == 2);
  CHECK(at(*next) == 2);
}
