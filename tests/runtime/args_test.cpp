#include "runtime/args.h"

#include <doctest/doctest.h>

using namespace cryo::cli;

static const std::vector<OptionSpec> kSpecs = {
    {{"-t", "--tree"}, true},  {{"-D", "--images-dir"}, true}, {{"-j", "--shell-job"}, false},
    {{"-v", "--verbosity"}, true}, {{"--no-subreaper"}, false}, {{"--env"}, true, true},
};

TEST_CASE("CRIU spellings: short, long, attached and = forms") {
  std::string err;
  auto a = parse(kSpecs, {"-t", "12", "--images-dir=/tmp/x", "-j", "-v4"}, &err);
  REQUIRE(a);
  CHECK(a->get("tree") == "12");
  CHECK(a->get("images-dir") == "/tmp/x");
  CHECK(a->has("shell-job"));
  CHECK(a->get("verbosity") == "4");
}

TEST_CASE("runc spellings: single-dash long options and repeated values") {
  std::string err;
  auto a = parse(kSpecs, {"-no-subreaper", "--env", "A=1", "--env", "B=2", "id"}, &err);
  REQUIRE(a);
  CHECK(a->has("no-subreaper"));
  CHECK(a->all("env") == std::vector<std::string>{"A=1", "B=2"});
  CHECK(a->positional() == std::vector<std::string>{"id"});
}

TEST_CASE("unknown options and missing values are errors") {
  std::string err;
  CHECK_FALSE(parse(kSpecs, {"--bogus"}, &err));
  CHECK(err == "unknown option --bogus");
  CHECK_FALSE(parse(kSpecs, {"-t"}, &err));
  CHECK(err == "option -t needs a value");
}

TEST_CASE("stop_at_positional leaves the verb's own flags alone") {
  std::string err;
  auto a = parse(kSpecs, {"-j", "exec", "-t", "x"}, &err, true);
  REQUIRE(a);
  CHECK(a->positional() == std::vector<std::string>{"exec", "-t", "x"});
}

static const std::vector<OptionSpec> kCriuLike = {
    {{"-d", "--restore-detached"}, false, false, false, true},
    {{"-j", "--shell-job"}, false, false, false, true},
    {{"-v", "--verbosity"}, true, true, true},
    {{"--manage-cgroups"}, true, false, true},
    {{"-t", "--tree"}, true},
};

TEST_CASE("bundled one-letter options, as getopt reads them") {
  std::string err;
  auto a = parse(kCriuLike, {"-dj", "-vvv", "-jt", "42"}, &err);
  REQUIRE(a);
  CHECK(a->has("restore-detached"));
  CHECK(a->has("shell-job"));
  CHECK(a->all("verbosity") == std::vector<std::string>{"vv"});
  CHECK(a->get("tree") == "42");
  CHECK_FALSE(parse(kCriuLike, {"-dq"}, &err));
  CHECK(err == "unknown option -dq");
}

TEST_CASE("optional values are attached, never the next word") {
  std::string err;
  auto a = parse(kCriuLike, {"--manage-cgroups", "-v", "-v2"}, &err);
  REQUIRE(a);
  CHECK(a->get("manage-cgroups") == "");
  CHECK(a->all("verbosity") == std::vector<std::string>{"", "2"});
  a = parse(kCriuLike, {"--manage-cgroups=none"}, &err);
  REQUIRE(a);
  CHECK(a->get("manage-cgroups") == "none");
  a = parse(kCriuLike, {"--manage-cgroups", "none"}, &err);
  REQUIRE(a);
  CHECK(a->get("manage-cgroups") == "");
  CHECK(a->positional() == std::vector<std::string>{"none"});
}

TEST_CASE("--no-NAME undoes a negatable flag, and only those") {
  std::string err;
  auto a = parse(kCriuLike, {"--shell-job", "-d", "--no-shell-job"}, &err);
  REQUIRE(a);
  CHECK_FALSE(a->has("shell-job"));
  CHECK(a->has("restore-detached"));
  CHECK_FALSE(parse(kCriuLike, {"--no-tree"}, &err));
  CHECK(err == "unknown option --no-tree");
}
