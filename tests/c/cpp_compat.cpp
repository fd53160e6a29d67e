// The header must compile as C++ (cbindgen's cpp_compat) with strict
// warnings, and link: a C++ caller builds a sharder, looks up a key and reads
// the node's name, using the enum as C++ sees it.
#include "shardkit.h"

#include <cstdio>
#include <cstring>
#include <string>

int main() {
  const char *names[2] = {"cache-a", "cache-b"};
  shardkit_node nodes[2];
  for (int i = 0; i < 2; i++) {
    nodes[i].name = reinterpret_cast<const uint8_t *>(names[i]);
    nodes[i].name_len = std::strlen(names[i]);
    nodes[i].weight = 1;
  }
  shardkit_sharder *s = nullptr;
  shardkit_status st = shardkit_sharder_new(nodes, 2, nullptr, &s);
  if (st != SHARDKIT_STATUS_OK) {
    std::fprintf(stderr, "cpp_compat: new: %s\n", shardkit_status_message(st));
    return 1;
  }
  const std::string key = "user:42";
  uint32_t slot = 0;
  st = shardkit_sharder_lookup(s, reinterpret_cast<const uint8_t *>(key.data()), key.size(),
                               &slot);
  uint8_t buf[32];
  size_t len = 0;
  if (st == SHARDKIT_STATUS_OK) st = shardkit_sharder_node_name(s, slot, buf, sizeof buf, &len);
  shardkit_sharder_free(s);
  if (st != SHARDKIT_STATUS_OK) {
    std::fprintf(stderr, "cpp_compat: lookup: %s\n", shardkit_status_message(st));
    return 1;
  }
  std::string name(reinterpret_cast<const char *>(buf), len);
  if (name != "cache-a" && name != "cache-b") {
    std::fprintf(stderr, "cpp_compat: unexpected node %s\n", name.c_str());
    return 1;
  }
  std::printf("cpp_compat: %s -> %s (shardkit %s)\n", key.c_str(), name.c_str(),
              shardkit_version());
  return 0;
}
