// PageWriter with several threads filling buffers at once (mm::PageCopies):
// every piece must land at the offset its submit returned, the file must be
// the pieces with no gap or overlap, and a sink (a page server) must see
// them in file order from one writer, since its stream has no offsets to
// reorder by.
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
  uint64_t offset;
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

// The data part of pages.img (from kPagesDataOffset) holds each buffer at
// its offset, and nothing else.
void check_layout(const std::string& bytes, const std::vector<Submitted>& submitted) {
  uint64_t total = 0;
  for (const auto& s : submitted) {
    size_t n = pages_of(s.seq);
    total += n * kPage;
    REQUIRE(s.offset >= kPagesDataOffset);
    REQUIRE(s.offset + n * kPage <= bytes.size());
    for (size_t p = 0; p < n; p++) {
      const char* page = bytes.data() + s.offset + p * kPage;
      for (size_t i = 0; i < kPage; i += 512) CHECK(static_cast<uint8_t>(page[i]) == mark(s.reader, s.seq, p));
    }
  }
  CHECK(bytes.size() == kPagesDataOffset + total);
}

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

TEST_CASE("pages from several readers land where their submit said, one after the other") {
  testing::TempDir dir("page-writer");
  std::string path = dir.path + "/pages.img";
  auto w = PageWriter::create(path);
  REQUIRE(w.ok());
  REQUIRE((*w)->add_readers(kReaders).ok());
  auto submitted = fill_from_readers(**w);
  REQUIRE((*w)->finish().ok());
  uint64_t size = (*w)->size();
  w->reset();
  auto bytes = read_file(path);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == size);
  CHECK(std::memcmp(bytes->data(), "CRYOIMG", 8) == 0);
  check_layout(*bytes, submitted);
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
  CHECK(seen->finished_at == (*w)->size());
  check_layout(seen->bytes, submitted);
}

// A span reserved for another writer (a task writing its own pages,
// core/mm/task_write.h) lies between the submits before and after it, reads
// back what was written there, and a punched part reads as zeros.
TEST_CASE("a reserved span is written by another writer, read back and punched") {
  testing::TempDir dir("page-writer-span");
  std::string path = dir.path + "/pages.img";
  auto w = PageWriter::create(path);
  REQUIRE(w.ok());
  uint8_t* buf = (*w)->buffer(kPage);
  std::memset(buf, 1, kPage);
  auto before = (*w)->submit(buf, {{buf, kPage}});
  REQUIRE(before.ok());
  auto span = (*w)->reserve(4 * kPage);
  REQUIRE(span.ok());
  CHECK(*span == *before + kPage);
  buf = (*w)->buffer(kPage);
  std::memset(buf, 3, kPage);
  auto after = (*w)->submit(buf, {{buf, kPage}});
  REQUIRE(after.ok());
  CHECK(*after == *span + 4 * kPage);
  // The other writer: its own fd of the same file, as a task holds it.
  int other = ::dup((*w)->file_fd());
  REQUIRE(other >= 0);
  std::vector<uint8_t> mine(4 * kPage, 2);
  CHECK(::pwrite(other, mine.data(), mine.size(), static_cast<off_t>(*span)) == static_cast<ssize_t>(mine.size()));
  ::close(other);
  std::vector<uint8_t> back(4 * kPage);
  REQUIRE((*w)->read_back(*span, back.data(), back.size()).ok());
  CHECK(back == mine);
  (*w)->punch(*span + kPage, 2 * kPage);
  REQUIRE((*w)->finish().ok());
  auto file = read_file(path);
  REQUIRE(file.ok());
  REQUIRE(file->size() == *after + kPage);
  auto at = [&](uint64_t offset) { return static_cast<uint8_t>((*file)[offset]); };
  CHECK(at(*before) == 1);
  CHECK(at(*span) == 2);
  CHECK(at(*span + kPage) == 0);  // punched (the temporary directory's filesystem can)
  CHECK(at(*span + 3 * kPage - 1) == 0);
  CHECK(at(*span + 3 * kPage) == 2);
  CHECK(at(*after) == 3);
}
