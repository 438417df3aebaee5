#include "bench/bench.h"

int main(int argc, char** argv) { return spool::bench::Main(argc, argv); }
