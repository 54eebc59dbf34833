// Seeds for the fuzz targets, made from a real image directory:
//
//   fuzz_make_seeds DUMP_DIR SEEDS_DIR NAME
//
// writes SEEDS_DIR/decode/NAME-FILE, each message file of the dump behind
// the decode fuzzer's control byte, and SEEDS_DIR/image_dir/NAME, the whole
// dump as a bundle. Each list of page runs keeps only its first run, cut to
// one page: a seed of a few kilobytes keeps the mutations on the messages
// rather than on page data. The bundle is checked to load before it is kept.
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "core/image/image.h"
#include "core/image_load.h"
#include "core/sys/io.h"
#include "tests/fuzz/bundle.h"

using namespace cryo;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint8_t kFixChecksum = 0x80;  // see decode_fuzzer.cpp

using PageRuns = google::protobuf::RepeatedPtrField<image::PageRun>;

// Keeps the first run, cut to one page whose bytes go to the end of
// page_data (the new pages.img after its header); drops the others.
Status keep_first_page(PageRuns* runs, const image::ImageDirReader& reader, std::string* page_data) {
  if (runs->empty()) return {};
  image::PageRun run = runs->Get(0);
  CRYO_ASSIGN(const uint8_t* page, reader.run_bytes(run));
  // The seed is one flat image: no parent's level, nothing checked whole
  // elsewhere (a --leave-running dump's runs are slices of its running copy).
  run.set_level(0);
  run.set_checked(false);
  run.set_npages(1);
  run.set_file(0);
  run.set_offset(image::kPagesDataOffset + page_data->size());
  run.set_xxh3(image::checksum(page, kPage));
  page_data->append(reinterpret_cast<const char*>(page), kPage);
  runs->Clear();
  *runs->Add() = run;
  return {};
}

Result<std::vector<fuzz::BundleFile>> bundle_of(const std::string& dump_dir) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(dump_dir));
  CRYO_ASSIGN(LoadedImage img, load_image(reader));
  std::string page_data;
  for (auto& [pid, mm] : img.mms) CRYO_TRY(keep_first_page(mm.mutable_pages(), reader, &page_data));
  for (auto& shmem : *img.files.mutable_shmems()) CRYO_TRY(keep_first_page(shmem.mutable_pages(), reader, &page_data));
  for (auto& sysv : *img.files.mutable_sysv_shms()) CRYO_TRY(keep_first_page(sysv.mutable_pages(), reader, &page_data));
  for (auto& content : *img.files.mutable_contents())
    CRYO_TRY(keep_first_page(content.mutable_pages(), reader, &page_data));

  std::vector<fuzz::BundleFile> files;
  image::Inventory inventory = reader.inventory();
  inventory.clear_superseded_pages();  // bytes of the dump's page files, not the seed's
  inventory.clear_page_files();        // the seed has pages.img alone
  auto* listed = inventory.mutable_files();
  for (uint32_t file = 1; file < reader.inventory().page_files(); file++)
    for (int i = 0; i < listed->size(); i++)
      if (listed->Get(i).name() == image::page_file_name(file)) listed->DeleteSubrange(i--, 1);
  files.push_back({image::kInventoryName, inventory.SerializeAsString()});
  files.push_back({image::kTreeName, img.tree.SerializeAsString()});
  files.push_back({image::kFilesName, img.files.SerializeAsString()});
  for (const auto& [pid, core] : img.cores) files.push_back({image::core_name(pid), core.SerializeAsString()});
  for (const auto& [pid, mm] : img.mms) files.push_back({image::mm_name(pid), mm.SerializeAsString()});
  files.push_back({image::kPagesName, page_data});
  for (const auto& f : files)
    if (f.body.find(fuzz::kSeparator) != std::string::npos)
      return Error(EINVAL, f.name + " holds the bundle separator: choose another");
  return files;
}

Status load_dir(const std::string& dir) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(dir));
  CRYO_TRY(load_image(reader));
  return {};
}

// The seed must reach load_image's end, or the fuzzer starts from a refusal.
Status check_loads(const std::vector<fuzz::BundleFile>& files) {
  char tmpl[] = "/tmp/cryo-seed-XXXXXX";
  if (!::mkdtemp(tmpl)) return errno_error("mkdtemp");
  Status st = fuzz::write_bundle(files, tmpl);
  if (st.ok()) st = load_dir(tmpl);
  std::error_code ignored;
  std::filesystem::remove_all(tmpl, ignored);
  return std::move(st).wrap("the seed bundle does not load");
}

Status make_seeds(const std::string& dump_dir, const std::string& seeds_dir, const std::string& name) {
  CRYO_ASSIGN(auto files, bundle_of(dump_dir));
  CRYO_TRY(check_loads(files));
  for (const char* sub : {"", "/decode", "/image_dir"})
    if (::mkdir((seeds_dir + sub).c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + seeds_dir + sub);
  CRYO_TRY(write_file_atomic(seeds_dir + "/image_dir/" + name, fuzz::join_bundle(files)));
  for (const auto& f : files) {
    if (f.name == image::kPagesName) continue;
    image::Kind kind = *fuzz::kind_of(f.name);
    auto message = fuzz::new_message(kind);
    if (!message->ParseFromString(f.body)) return Error(EINVAL, f.name + ": does not parse again");
    std::string seed(1, static_cast<char>(kFixChecksum | static_cast<uint8_t>(kind)));
    seed += image::encode(kind, {message.get()});
    CRYO_TRY(write_file_atomic(seeds_dir + "/decode/" + name + "-" + f.name, seed));
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DUMP_DIR SEEDS_DIR NAME\n", argv[0]);
    return 2;
  }
  Status st = make_seeds(argv[1], argv[2], argv[3]);
  if (!st.ok()) {
    std::fprintf(stderr, "fuzz_make_seeds: %s: %s\n", argv[1], st.error().message().c_str());
    return 1;
  }
  return 0;
}
