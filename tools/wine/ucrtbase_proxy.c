/* A ucrtbase.dll for the Wine prefix that builds main.exe (tools/wine_bundle.sh): every export is
 * forwarded to ucrtbase_wine.dll, a copy of Wine's own (the .def is generated from its export table),
 * except those Wine 8.0 only stubs and numpy/TensorFlow call: the C99 complex functions (numpy's
 * npymath; its import aborts on the stubs) and feholdexcept (TensorFlow's hdf5).
 *
 * ABI: ucrt's _Dcomplex/_Fcomplex/_Lcomplex are structs of two doubles/floats/doubles (MSVC's long
 * double is a double), passed and returned as structs; GCC's ms_abi passes structs exactly as MSVC
 * does, so the exports take those structs and compute with libmingwex's double/float _Complex.
 * Never shipped: it lives in the build prefix only. */
#include <complex.h>
#include <math.h>
#include <windows.h>

typedef struct { double v[2]; } Dcomplex;  /* ucrt _Dcomplex and _Lcomplex */
typedef struct { float v[2]; } Fcomplex;   /* ucrt _Fcomplex */

static double _Complex d_in(Dcomplex z) { return __builtin_complex(z.v[0], z.v[1]); }
static Dcomplex d_out(double _Complex z) { Dcomplex r = {{creal(z), cimag(z)}}; return r; }
static float _Complex f_in(Fcomplex z) { return __builtin_complex(z.v[0], z.v[1]); }
static Fcomplex f_out(float _Complex z) { Fcomplex r = {{crealf(z), cimagf(z)}}; return r; }

static double _Complex clog10_d(double _Complex z) { return clog(z) / M_LN10; }
static float _Complex clog10_f(float _Complex z) { return clogf(z) / (float)M_LN10; }

/* name -> proxy_name, proxy_namef, proxy_namel (the "l" forms take and give doubles, as MSVC's) */
#define UNARY(name, dfun, ffun) \
    Dcomplex proxy_##name(Dcomplex z) { return d_out(dfun(d_in(z))); } \
    Fcomplex proxy_##name##f(Fcomplex z) { return f_out(ffun(f_in(z))); } \
    Dcomplex proxy_##name##l(Dcomplex z) { return d_out(dfun(d_in(z))); }
#define TO_REAL(name, dfun, ffun) \
    double proxy_##name(Dcomplex z) { return dfun(d_in(z)); } \
    float proxy_##name##f(Fcomplex z) { return ffun(f_in(z)); } \
    double proxy_##name##l(Dcomplex z) { return dfun(d_in(z)); }

UNARY(cacos, cacos, cacosf) UNARY(cacosh, cacosh, cacoshf) UNARY(casin, casin, casinf)
UNARY(casinh, casinh, casinhf) UNARY(catan, catan, catanf) UNARY(catanh, catanh, catanhf)
UNARY(ccos, ccos, ccosf) UNARY(ccosh, ccosh, ccoshf) UNARY(cexp, cexp, cexpf)
UNARY(clog, clog, clogf) UNARY(clog10, clog10_d, clog10_f) UNARY(conj, conj, conjf)
UNARY(cproj, cproj, cprojf) UNARY(csin, csin, csinf) UNARY(csinh, csinh, csinhf)
UNARY(csqrt, csqrt, csqrtf) UNARY(ctan, ctan, ctanf) UNARY(ctanh, ctanh, ctanhf)
TO_REAL(cabs, cabs, cabsf) TO_REAL(carg, carg, cargf) TO_REAL(cimag, cimag, cimagf)
TO_REAL(creal, creal, crealf)

Dcomplex proxy_cpow(Dcomplex a, Dcomplex b) { return d_out(cpow(d_in(a), d_in(b))); }
Fcomplex proxy_cpowf(Fcomplex a, Fcomplex b) { return f_out(cpowf(f_in(a), f_in(b))); }
Dcomplex proxy_cpowl(Dcomplex a, Dcomplex b) { return d_out(cpow(d_in(a), d_in(b))); }

Dcomplex proxy__Cbuild(double re, double im) { Dcomplex r = {{re, im}}; return r; }
Fcomplex proxy__FCbuild(float re, float im) { Fcomplex r = {{re, im}}; return r; }
Dcomplex proxy__LCbuild(double re, double im) { Dcomplex r = {{re, im}}; return r; }
Dcomplex proxy__Cmulcc(Dcomplex a, Dcomplex b) { return d_out(d_in(a) * d_in(b)); }
Fcomplex proxy__FCmulcc(Fcomplex a, Fcomplex b) { return f_out(f_in(a) * f_in(b)); }
Dcomplex proxy__LCmulcc(Dcomplex a, Dcomplex b) { return d_out(d_in(a) * d_in(b)); }
Dcomplex proxy__Cmulcr(Dcomplex a, double b) { return d_out(d_in(a) * b); }
Fcomplex proxy__FCmulcr(Fcomplex a, float b) { return f_out(f_in(a) * b); }
Dcomplex proxy__LCmulcr(Dcomplex a, double b) { return d_out(d_in(a) * b); }

/* C99 feholdexcept with ucrt's fenv_t: save the environment, clear the flags, mask every exception,
 * through Wine's own fegetenv/feclearexcept/_controlfp so the saved fenv_t is the one its fesetenv reads. */
int proxy_feholdexcept(void *env) {
    static int (__cdecl *get_env)(void *);
    static int (__cdecl *clear)(int);
    static unsigned int (__cdecl *controlfp)(unsigned int, unsigned int);
    if (!get_env) {
        HMODULE wine = GetModuleHandleA("ucrtbase_wine.dll");
        if (!wine) return 1;
        clear = (void *)GetProcAddress(wine, "feclearexcept");
        controlfp = (void *)GetProcAddress(wine, "_controlfp");
        get_env = (void *)GetProcAddress(wine, "fegetenv");
        if (!get_env || !clear || !controlfp) { get_env = NULL; return 1; }
    }
    if (get_env(env)) return 1;
    clear(0x1f);                   /* FE_ALL_EXCEPT */
    controlfp(0x8001f, 0x8001f);   /* _MCW_EM: all exceptions masked (non-stop mode) */
    return 0;
}
