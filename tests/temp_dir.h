// A directory of one test's own under /tmp, removed with all it holds.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <doctest/doctest.h>

namespace cryo::testing {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& what) {
    std::string tmpl = "/tmp/cryo-" + what + "-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace cryo::testing
