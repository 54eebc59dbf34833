#include "core/image/image.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/sys/io.h"

#include "core/image/proto/tree.pb.h"

using namespace cryo;
using namespace cryo::image;

namespace {

Tree sample_tree() {
  Tree tree;
  for (int i = 0; i < 3; i++) {
    auto* t = tree.add_tasks();
    t->set_pid(100 + i);
    t->set_ppid(i == 0 ? 0 : 100);
    t->set_comm("task" + std::to_string(i));
    t->add_tids(100 + i);
  }
  return tree;
}

}  // namespace

TEST_CASE("a message file round-trips") {
  Tree tree = sample_tree();
  std::string bytes = encode(Kind::kTree, {&tree});
  Tree back;
  REQUIRE(decode_one(Kind::kTree, bytes, &back).ok());
  CHECK(back.SerializeAsString() == tree.SerializeAsString());
}

TEST_CASE("every truncation is refused") {
  Tree tree = sample_tree();
  std::string bytes = encode(Kind::kTree, {&tree});
  for (size_t len = 0; len < bytes.size(); len++) {
    Tree back;
    CHECK_FALSE(decode_one(Kind::kTree, std::string_view(bytes).substr(0, len), &back).ok());
  }
}

TEST_CASE("every flipped byte is refused") {
  Tree tree = sample_tree();
  std::string bytes = encode(Kind::kTree, {&tree});
  for (size_t i = 0; i < bytes.size(); i++) {
    for (uint8_t bit : {0x01, 0x80}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ bit);
      Tree back;
      auto status = decode_one(Kind::kTree, bad, &back);
      CHECK_FALSE(status.ok());
    }
  }
}

TEST_CASE("a file of another kind or version is refused with a clear message") {
  Tree tree = sample_tree();
  std::string bytes = encode(Kind::kTree, {&tree});
  Tree back;
  auto wrong_kind = decode_one(Kind::kCore, bytes, &back);
  REQUIRE_FALSE(wrong_kind.ok());
  CHECK(wrong_kind.error().message().find("tree image where a core image belongs") != std::string::npos);
  std::string newer = bytes;
  newer[8] = 9;
  auto wrong_version = decode_one(Kind::kTree, newer, &back);
  REQUIRE_FALSE(wrong_version.ok());
  CHECK(wrong_version.error().message().find("version 9 is not supported") != std::string::npos);
}

TEST_CASE("a huge record length is refused before any allocation") {
  Tree tree = sample_tree();
  std::string bytes = encode(Kind::kTree, {&tree});
  std::string bad = bytes;
  bad[16] = '\xfe';
  bad[17] = '\xff';
  bad[18] = '\xff';
  bad[19] = '\x7f';
  Tree back;
  CHECK_FALSE(decode_one(Kind::kTree, bad, &back).ok());
}

TEST_CASE("a checksum taken page by page equals the one of the whole run") {
  // The dump checksums each page right after reading it; the restore checks
  // whole runs at once: both must agree, for every way of cutting a run.
  std::string run(5 * 4096 + 100, '\0');
  for (size_t i = 0; i < run.size(); i++) run[i] = static_cast<char>((i * 2654435761u) >> 13);
  cryo::image::Checksummer sum;
  for (size_t piece : {size_t{1}, size_t{7}, size_t{64}, size_t{4096}, size_t{4096 * 3}}) {
    sum.reset();
    for (size_t at = 0; at < run.size(); at += piece) sum.update(run.data() + at, std::min(piece, run.size() - at));
    CHECK(sum.digest() == cryo::image::checksum(run.data(), run.size()));
  }
  sum.reset();
  CHECK(sum.digest() == cryo::image::checksum(nullptr, 0));
}

TEST_CASE("a mapped file's checksum is remembered only while its times vouch for it") {
  char dir_template[] = "/tmp/cryo-checksums-test-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  std::string dir = dir_template;
  std::string cache = dir + "/cache";
  auto entries = [&] {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(cache.c_str())) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') names.push_back(cache + "/" + e->d_name);
      ::closedir(d);
    }
    return names;
  };
  // A file changed just now is hashed, not remembered.
  std::string fresh = dir + "/fresh";
  {
    std::FILE* f = std::fopen(fresh.c_str(), "w");
    REQUIRE(f);
    std::fputs("just written", f);
    std::fclose(f);
  }
  auto sum = mapped_file_checksum(fresh, cache);
  REQUIRE(sum.ok());
  CHECK(*sum == *file_checksum(fresh));
  CHECK(entries().empty());
  // An old file (a program of the system) is remembered, and what is
  // remembered is what a second call answers.
  std::string old = "/usr/bin/true";
  auto first = mapped_file_checksum(old, cache);
  REQUIRE(first.ok());
  CHECK(*first == *file_checksum(old));
  auto names = entries();
  REQUIRE(names.size() == 1);
  std::string text = *read_file(names[0]);
  REQUIRE(text.size() > 17);
  std::string forged = text.substr(0, text.size() - 17) + "00000000000000aa\n";
  {
    std::FILE* f = std::fopen(names[0].c_str(), "w");
    REQUIRE(f);
    std::fputs(forged.c_str(), f);
    std::fclose(f);
  }
  CHECK(*mapped_file_checksum(old, cache) == 0xaa);
  // Another size or time than the entry's: hashed again.
  std::string stale = "1 " + text.substr(text.find(' ') + 1);
  {
    std::FILE* f = std::fopen(names[0].c_str(), "w");
    REQUIRE(f);
    std::fputs(stale.c_str(), f);
    std::fclose(f);
  }
  CHECK(*mapped_file_checksum(old, cache) == *first);
  for (const auto& n : entries()) ::unlink(n.c_str());
  ::rmdir(cache.c_str());
  ::unlink(fresh.c_str());
  ::rmdir(dir.c_str());
}

// checksum() and Checksummer run an AVX2 build of XXH3 where the CPU has it:
// an image must checksum alike on every machine, so its values are the
// library's, for every length (the short-input paths too) and any split.
TEST_CASE("checksums are the library's XXH3 values, whole or in pieces") {
  std::vector<uint8_t> data(3 << 20);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (auto& b : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  CHECK(checksum(data.data(), 0) == 0x2D06800538D394C2ULL);  // XXH3-64 of nothing
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 300; n++) sizes.push_back(n);
  for (size_t n : {1023, 1024, 1025, 4096, 65536, 262144 + 7, 3 << 20}) sizes.push_back(n);
  for (size_t n : sizes) {
    uint64_t want = XXH3_64bits(data.data(), n);
    CHECK(checksum(data.data(), n) == want);
    Checksummer sum;
    for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 + 1)
      sum.update(data.data() + at, std::min(step, n - at));
    CHECK(sum.digest() == want);
  }
}
