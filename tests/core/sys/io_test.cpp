#include "core/sys/io.h"
#include "tests/temp_dir.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace cryo;

namespace {

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

}  // namespace

TEST_CASE("write_file_atomic replaces a file whole, synced or not") {
  testing::TempDir dir("io-test");
  std::string file = dir.path + "/state.json";
  REQUIRE(write_file_atomic(file, "first").ok());
  REQUIRE(write_file_atomic(file, "second", Durability::kCacheOnly).ok());
  auto text = read_file(file);
  REQUIRE(text.ok());
  CHECK(*text == "second");
  CHECK(names_in(dir.path) == std::vector<std::string>{"state.json"});
}

TEST_CASE("write_file_atomic leaves nothing behind when the rename fails") {
  testing::TempDir dir("io-test");
  std::string taken = dir.path + "/taken";
  REQUIRE(::mkdir(taken.c_str(), 0700) == 0);
  REQUIRE(::mkdir((taken + "/inside").c_str(), 0700) == 0);  // a directory not empty cannot be replaced
  auto st = write_file_atomic(taken, "data");
  CHECK_FALSE(st.ok());
  CHECK(names_in(dir.path) == std::vector<std::string>{"taken"});
  ::rmdir((taken + "/inside").c_str());
}
