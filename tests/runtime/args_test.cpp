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
