"""The three-party protocol on secret shares (3-party replicated sharing over Z_2^64, semi-honest).

`randomness` (AES-CTR streams), `shares` (replicated shares and terms), `rounds`, `transport` and
`party` (one party's messages and keys), `arithmetic` (products, truncation, re-sharing), `comparison`
(comparison, ReLU, gating), `backend` (a prediction on one party's shares), `client` (the client's side:
check and share inputs, reconstruct outputs), `model_shares` (the model owner's side and the parties'
bundles) and `costs`.
"""
