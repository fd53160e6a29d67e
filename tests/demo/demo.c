/* The C side of `make demo`: build a twemproxy-compatible ring from a
 * nutcracker.yml pool and route a few keys, as an embedding proxy would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardkit.h"

static int fail(const char *what, shardkit_status st) {
    char msg[512];
    size_t len = 0;
    shardkit_last_error(msg, sizeof msg, &len);
    fprintf(stderr, "%s: %s: %s\n", what, shardkit_status_message(st), msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s nutcracker.yml [KEY...]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char yaml[1 << 16];
    size_t yaml_len = fread(yaml, 1, sizeof yaml, f);
    fclose(f);

    shardkit_sharder *ring = NULL;
    shardkit_status st = shardkit_sharder_from_twemproxy_yaml(
        (const uint8_t *)yaml, yaml_len, NULL, 0, &ring);
    if (st != SHARDKIT_STATUS_OK) return fail("from_twemproxy_yaml", st);

    printf("C    shardkit %s, %zu servers\n", shardkit_version(), shardkit_sharder_len(ring));
    for (int i = 2; i < argc; i++) {
        uint32_t slot = 0;
        st = shardkit_sharder_lookup(ring, (const uint8_t *)argv[i], strlen(argv[i]), &slot);
        if (st != SHARDKIT_STATUS_OK) return fail("lookup", st);
        uint8_t name[256];
        size_t name_len = 0;
        st = shardkit_sharder_node_name(ring, slot, name, sizeof name, &name_len);
        if (st != SHARDKIT_STATUS_OK) return fail("node_name", st);
        printf("C    %s\t%.*s\n", argv[i], (int)name_len, (const char *)name);
    }
    shardkit_sharder_free(ring);
    return 0;
}
