// openblas_sgemm times OpenBLAS's cblas_sgemm on square or M×K×N shapes and
// prints one JSON object per shape, with the fields of "unclip bench
// kernels --json" (op, shape, dtype, device, threads, seconds, gflops).
// It is a measuring tool only; the Go module never links OpenBLAS.
//
// Build (Debian: apt-get install libopenblas-dev):
//
//	cc -O2 -o openblas_sgemm openblas_sgemm.c -lopenblas
//
// Usage: openblas_sgemm THREADS REPS SHAPE...   (SHAPE = MxKxN[/linear])
//
// "/linear" multiplies by a transposed (N, K) weight as nn.Linear does.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void openblas_set_num_threads(int);

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: %s THREADS REPS MxKxN[/linear]...\n", argv[0]);
		return 2;
	}
	int threads = atoi(argv[1]), reps = atoi(argv[2]);
	if (threads < 1 || reps < 1) {
		fprintf(stderr, "bad THREADS or REPS\n");
		return 2;
	}
	openblas_set_num_threads(threads);
	for (int s = 3; s < argc; s++) {
		int m, k, n;
		if (sscanf(argv[s], "%dx%dx%d", &m, &k, &n) != 3) {
			fprintf(stderr, "bad shape %s\n", argv[s]);
			return 2;
		}
		int linear = strstr(argv[s], "/linear") != NULL;
		float *a = malloc(sizeof(float) * (size_t)m * k);
		float *b = malloc(sizeof(float) * (size_t)k * n);
		float *c = malloc(sizeof(float) * (size_t)m * n);
		srand(1);
		for (size_t i = 0; i < (size_t)m * k; i++) a[i] = 2.0f * rand() / RAND_MAX - 1;
		for (size_t i = 0; i < (size_t)k * n; i++) b[i] = 2.0f * rand() / RAND_MAX - 1;
		double *t = malloc(sizeof(double) * reps);
		for (int r = -1; r < reps; r++) { // r = -1: warm-up
			double t0 = now();
			if (linear)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, c, n);
			else
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
			if (r >= 0) t[r] = now() - t0;
		}
		qsort(t, reps, sizeof(double), cmp);
		double med = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
		printf("{\"op\":\"matmul\",\"shape\":\"%s\",\"dtype\":\"f32\",\"device\":\"openblas\",\"threads\":%d,"
		       "\"reps\":%d,\"seconds\":%.9g,\"gflops\":%.4g}\n",
		       argv[s], threads, reps, med, 2.0 * m * k * n / med / 1e9);
		fflush(stdout);
		free(a), free(b), free(c), free(t);
	}
	return 0;
}
