#include "fsck/fsck.h"
#include "test_util.h"
