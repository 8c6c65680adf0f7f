//! Linear algebra: Cayley transform via LU, Pade expm and its adjoint, skew helpers, QR, SVD.
