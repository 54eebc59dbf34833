#include "runtime/args.h"

namespace cryo::cli {

std::optional<std::string> Args::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::get_or(const std::string& key, const std::string& fallback) const {
  auto v = get(key);
  return v ? *v : fallback;
}

const std::vector<std::string>& Args::all(const std::string& key) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(key);
  return it == values_.end() ? kEmpty : it->second;
}

namespace {

std::string key_of(const OptionSpec& spec) {
  for (auto& n : spec.names)
    if (n.starts_with("--")) return n.substr(2);
  return spec.names.front().substr(1);
}

const OptionSpec* find(const std::vector<OptionSpec>& specs, const std::string& name) {
  for (auto& s : specs)
    for (auto& n : s.names) {
      if (n == name) return &s;
      // runc accepts "-name" for "--name".
      if (n.starts_with("--") && name.size() > 2 && name[0] == '-' && name[1] != '-' && n.substr(1) == name)
        return &s;
    }
  return nullptr;
}

void store(Args& args, const OptionSpec& spec, std::string value) {
  auto& slot = args.values_[key_of(spec)];
  if (!spec.repeatable) slot.clear();
  slot.push_back(std::move(value));
}

// "-dj", "-vvv", "-t123", "-jt" "123": one-letter options run together, as
// getopt reads them. A letter that takes a value takes the rest of the word
// (or, for a required value, the next word when the rest is empty).
bool parse_bundle(const std::vector<OptionSpec>& specs, const std::vector<std::string>& argv, size_t& i,
                  Args& args, std::string* error) {
  const std::string& word = argv[i];
  for (size_t k = 1; k < word.size(); k++) {
    const OptionSpec* spec = find(specs, std::string("-") + word[k]);
    if (!spec) {
      *error = "unknown option " + word;
      return false;
    }
    if (!spec->takes_value) {
      store(args, *spec, "");
      continue;
    }
    std::string rest = word.substr(k + 1);
    if (rest.empty() && !spec->optional_value) {
      if (i + 1 >= argv.size()) {
        *error = "option -" + std::string(1, word[k]) + " needs a value";
        return false;
      }
      rest = argv[++i];
    }
    store(args, *spec, rest);
    return true;
  }
  return true;
}

}  // namespace

std::optional<Args> parse(const std::vector<OptionSpec>& specs, const std::vector<std::string>& argv,
                          std::string* error, bool stop_at_positional) {
  Args args;
  for (size_t i = 0; i < argv.size(); i++) {
    const std::string& a = argv[i];
    if (a == "--") {
      args.positional_.insert(args.positional_.end(), argv.begin() + static_cast<long>(i) + 1, argv.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      if (stop_at_positional) {
        args.positional_.insert(args.positional_.end(), argv.begin() + static_cast<long>(i), argv.end());
        break;
      }
      args.positional_.push_back(a);
      continue;
    }
    std::string name = a;
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    const OptionSpec* spec = find(specs, name);
    if (!spec && name.starts_with("--no-")) {
      const OptionSpec* negated = find(specs, "--" + name.substr(5));
      if (negated && negated->negatable && !inline_value) {
        args.values_.erase(key_of(*negated));
        continue;
      }
    }
    if (!spec && a[1] != '-' && a.size() > 2) {
      if (!parse_bundle(specs, argv, i, args, error)) return std::nullopt;
      continue;
    }
    if (!spec) {
      *error = "unknown option " + name;
      return std::nullopt;
    }
    std::string value;
    if (spec->takes_value) {
      if (inline_value) value = *inline_value;
      else if (spec->optional_value) value = "";
      else if (i + 1 < argv.size()) value = argv[++i];
      else {
        *error = "option " + name + " needs a value";
        return std::nullopt;
      }
    } else if (inline_value) {
      if (*inline_value == "false") continue;  // "--detach=false"
      value = *inline_value;
    }
    store(args, *spec, value);
  }
  return args;
}

}  // namespace cryo::cli
