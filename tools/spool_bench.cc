#include "tools/bench/bench_tool.h"

int main(int argc, char** argv) { return spool::bench::Main(argc, argv); }
