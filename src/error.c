/*  Error code names and messages; see include/stallmesh/error.h.           */
#include "stallmesh/error.h"

const char *
sm_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
#define SM__ERR_TEXT(sym, val, name, text) case val: return text;
    SM_ERRORS(SM__ERR_TEXT)
#undef SM__ERR_TEXT
    default: return "unknown error";
    }
}

const char *
sm_errname(int err)
{
    switch (err) {
    case 0: return "ok";
#define SM__ERR_NAME(sym, val, name, text) case val: return name;
    SM_ERRORS(SM__ERR_NAME)
#undef SM__ERR_NAME
    default: return "unknown";
    }
}
