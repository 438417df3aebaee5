#include "tools/ctl/ctl.h"

int main(int argc, char** argv) { return spool::ctl::CtlMain(argc, argv); }
