/* The Python extension module: empty; the coder is loaded with ctypes (pixzip/native.py). */
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pxnative", "pixzip's native decoder (ctypes)", -1, NULL};
PyMODINIT_FUNC PyInit__pxnative(void) { return PyModule_Create(&module); }
