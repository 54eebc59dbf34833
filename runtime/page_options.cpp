#include "runtime/page_options.h"

#include <unistd.h>

#include "runtime/criu_options.h"

namespace cryo::cli {

std::optional<Args> parse_page_command(const char* verb, const std::vector<std::string>& argv, std::string* error) {
  std::vector<std::string> words;
  for (size_t i = 0; i < argv.size(); i++) {
    if (argv[i] == "-v" && i + 1 < argv.size() && !argv[i + 1].empty() &&
        argv[i + 1].find_first_not_of("0123456789") == std::string::npos) {
      words.push_back("-v" + argv[++i]);
      continue;
    }
    words.push_back(argv[i]);
  }
  auto args = parse(criu::specs(), words, error);
  if (args && !args->positional().empty()) {
    *error = std::string(verb) + ": unexpected argument " + args->positional()[0];
    return std::nullopt;
  }
  if (!args) *error = std::string(verb) + ": " + *error;
  return args;
}

pageserver::Endpoint page_endpoint(const Args& args, bool need_address, std::string* error) {
  pageserver::Endpoint ep;
  ep.address = args.get_or("address", "");
  if (need_address && ep.address.empty()) *error = "--address names the page server to use";
  auto port = args.get("port");
  if (!port) {
    *error = "--port names the page server's port";
  } else {
    ep.port = std::atoi(port->c_str());
    if (ep.port < 0 || ep.port > 65535 || port->find_first_not_of("0123456789") != std::string::npos)
      *error = "--port " + *port + " is not a port number";
  }
  ep.tls.enabled = args.has("tls");
  ep.tls.cacert = args.get_or("tls-cacert", "");
  ep.tls.cert = args.get_or("tls-cert", "");
  ep.tls.key = args.get_or("tls-key", "");
  ep.tls.no_cn_verify = args.has("tls-no-cn-verify");
  if (!ep.tls.enabled && (!ep.tls.cert.empty() || !ep.tls.key.empty() || !ep.tls.cacert.empty()))
    *error = "--tls-cert, --tls-key and --tls-cacert need --tls";
  return ep;
}

void report_ready(const Args& args) {
  auto fd = args.get("status-fd");
  if (!fd) return;
  int n = std::atoi(fd->c_str());
  char zero = 0;
  if (::write(n, &zero, 1) != 1) { /* the caller went away: nothing to tell */ }
  ::close(n);
}

}  // namespace cryo::cli
