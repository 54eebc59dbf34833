// A lazy migration's page stream (protocol.h, role kLazy): the dump that
// keeps the frozen tree (`cryo dump --lazy-pages`) serves the pages its
// image names as remote; `cryo lazy-pages --page-server` on the destination
// asks for them as the restored tree touches them, and for the rest in the
// background, then says bye: the source's tree goes only then.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "core/pageserver/channel.h"
#include "core/pageserver/protocol.h"

namespace cryo::pageserver {

// The most pages one request may ask for (the answer fits a frame).
constexpr uint64_t kMaxLazyPages = 1024;

// What the source serves: each image pid's remote runs, as sorted
// [start, end) ranges, and how to read their bytes from the frozen tree.
struct LazyPages {
  std::map<int32_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  std::function<Status(int32_t pid, uint64_t addr, uint8_t* buf, size_t bytes)> read;
  uint64_t total_pages = 0;
};

class LazySource {
 public:
  // Listens at `at` (before the tree is frozen: a port taken fails the dump
  // with the tree untouched). *bound_port is the port it got (for port 0).
  static Result<LazySource> listen(const Endpoint& at, int* bound_port);
  LazySource(LazySource&&) = default;

  // Waits for the lazy-pages daemon (an interrupt stops the wait), answers
  // its requests until it says it has every page it needs. An error, naming
  // how much was sent, when it goes away first.
  Status serve(const LazyPages& pages);

 private:
  LazySource() = default;
  UniqueFd listener_;
  Endpoint at_;
};

// A run of pages alike in an answer the fetcher checked: `count` pages from
// the `first`th, their bytes at `data`, or zero pages (data null).
struct AnsweredRun {
  uint64_t first, count;
  const uint8_t* data;
};
// The runs of an answer of npages pages (LazyFetcher::fetch), in order.
std::vector<AnsweredRun> answered_runs(const Frame& answer, uint64_t npages);

class LazyFetcher {
 public:
  // Connects to the source and greets it: a source missing fails at once.
  static Result<std::unique_ptr<LazyFetcher>> connect(const Endpoint& to);

  // Pages [addr, addr + npages * 4096) of image pid: out->payload holds one
  // byte a page (1: its data follows, 0: a zero page) then the data.
  Status fetch(int32_t pid, uint64_t addr, uint64_t npages, Frame* out);
  // Several at once: every request is sent before the first answer is read
  // (one round trip for all). out gets one answer a request, in order.
  struct Request {
    int32_t pid;
    uint64_t addr, npages;
  };
  Status fetch_all(const std::vector<Request>& requests, std::vector<Frame>* out);
  // Every page needed is in: the source may let its tree go.
  Status bye();
  const std::string& peer() const { return peer_; }
  uint64_t bytes() const { return bytes_; }

 private:
  Status ask(const Request& r);
  Status answer(const Request& r, Frame* out);
  std::unique_ptr<Channel> ch_;
  std::string peer_;
  uint64_t bytes_ = 0;
};

}  // namespace cryo::pageserver
