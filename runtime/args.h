// A small command-line parser that accepts both CRIU's and runc's spellings:
// "--opt value", "--opt=value", "-o value", "-ovalue" for one-letter options,
// bundled one-letter flags ("-dj", "-vvv"), "--no-opt" for negatable flags,
// and runc's single-dash long options ("-no-subreaper").
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cryo::cli {

struct OptionSpec {
  std::vector<std::string> names;  // {"-t", "--tree"}: the first long name is the key
  bool takes_value = false;
  bool repeatable = false;
  // The value may be left out; when given it is attached ("--opt=value",
  // "-ovalue"), never the next word, as getopt's optional arguments.
  bool optional_value = false;
  // "--no-NAME" undoes an earlier "--NAME" (CRIU's boolean options).
  bool negatable = false;
};

class Args {
 public:
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  std::optional<std::string> get(const std::string& key) const;
  std::string get_or(const std::string& key, const std::string& fallback) const;
  const std::vector<std::string>& all(const std::string& key) const;
  const std::vector<std::string>& positional() const { return positional_; }

  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// Parses argv; on error returns nullopt and sets *error. Parsing stops at "--"
// or, when stop_at_positional, at the first positional argument (the rest are positional).
std::optional<Args> parse(const std::vector<OptionSpec>& specs, const std::vector<std::string>& argv,
                          std::string* error, bool stop_at_positional = false);

}  // namespace cryo::cli
