"""The comparison's compiled kernels, bit for bit against the numpy computation they replaced.

The reference below is the numpy code of the comparison before the kernels, unchanged but for names (its
reductions and rotation are checked against numpy's remainder and np.roll): every width R = 1..63,
both pair members, random and edge inputs (a = 0 with beta = 1, all-zero and all-ones numbers, extreme
residues, rotation words 0 and 2^63 - 1), and an empty batch.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy import _numba
from privacy.encrypted.protocol import kernels
from privacy.encrypted.protocol.comparison import MODULUS
from privacy.encrypted.protocol.randomness import Prf

P = MODULUS
RNG = np.random.default_rng(14)  # test data only


# --- the numpy computation of the comparison before the kernels (privacy/encrypted/protocol/comparison.py at
# 347c4f8), kept as the reference: int16 test vectors, reductions by 128 = 1 mod p, rotation by windows.


def _bits(v, count):
    top = np.ascontiguousarray(v.reshape(-1, 1) << np.uint64(64 - count))
    flat = np.unpackbits(top.byteswap().view(np.uint8), axis=-1, count=count)
    return flat.reshape(v.shape + (count,)).astype(np.int16)


def _reduce(x):
    x = (x >> np.uint16(7)) + (x & np.uint16(127))
    return np.minimum(x, x - np.uint16(P))


def _mod(w):
    return _reduce((w + np.int16(P * 64)).view(np.uint16))


def _before(g, start):
    out = np.empty_like(g)
    out[..., 0] = start
    for j in range(1, g.shape[-1]):
        np.add(out[..., j - 1], g[..., j - 1], out=out[..., j])
    return out


def _rotate(w, offsets):
    rows = w.reshape(-1, w.shape[-1])
    count, width = rows.shape
    if not count:
        return w.copy()
    doubled = np.concatenate([rows, rows], axis=-1)
    windows = np.ndarray(
        (doubled.size - width + 1,), np.dtype((np.void, width * w.itemsize)), doubled, strides=(w.itemsize,)
    )
    starts = np.arange(count) * (2 * width) + offsets.reshape(-1)
    return windows[starts].view(w.dtype).reshape(w.shape)


def _vector(a, beta, shares, first, bits):
    t = _bits((a - beta) & np.uint64((1 << bits) - 1), bits)
    sign = (1 - 2 * beta.astype(np.int16))[:, None]
    g = 1 - 2 * t
    g *= shares
    if first:
        g += t
        spot = shares - t
        w = _before(g, 1)
    else:
        spot = shares.copy()
        w = _before(g, 0)
    spot *= sign
    w += spot
    always = (beta == 1) & (a == 0)
    if np.any(always):
        w[always] = np.concatenate([[0], np.ones(bits - 1, dtype=np.int16)]) if first else 0
    return w


def ref_pair_vectors(a, coins, shares, rho, mask, first):
    """The reference on the kernel's inputs: beta is bit 0 of the pair's coins, the rotation their other bits."""
    bits = shares.shape[1]
    beta, words = coins & np.uint64(1), coins >> np.uint64(1)
    product = _mod(_vector(a, beta, shares.astype(np.int16), first, bits))
    product *= np.add(rho, 1, dtype=np.uint16)
    product += mask.astype(np.uint16) if first else np.uint16(P) - mask.astype(np.uint16)
    return _rotate(_reduce(product).astype(np.uint8), (words % np.uint64(bits)).astype(np.int64))


def ref_helper_message(other, shares):
    total = _bits(other, shares.shape[1]).astype(np.uint8) + (np.uint8(P) - shares)
    return np.minimum(total, total - np.uint8(P))


def ref_any_zero_sum(u, v):
    total = u + v
    return np.any(np.minimum(total, total - np.uint8(P)) == 0, axis=1).astype(np.uint64)


def ring_words(*shape):
    """Random uint64 words with the ring's edges first: 0, 1, 2^63 - 1, 2^63, 2^64 - 1 (test data only)."""
    words = RNG.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)
    flat = words.reshape(-1)
    edges = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    flat[: min(len(flat), 5)] = edges[: len(flat)]
    return words


# The numpy steps of the comparison and of the input check that the ring-word kernels replaced
# (privacy/encrypted/protocol/comparison.py and input_check.py at 9a2f375), unchanged but for names.


def ref_helper_split(part, offset, low):
    big = part + offset
    return big, low - (big & low)


def ref_top_bit_xor(big, shift, flips):  # the helper's flips are delta in {0, 1}, the pair's its coins
    return ((big >> shift) & np.uint64(1)) ^ (flips & np.uint64(1))


def ref_gate_pair_term(pair, beta, delta, first):
    sigma = np.uint64(1) - np.uint64(2) * beta
    term = sigma * pair * delta
    if first:
        term += pair * beta
    return term


def ref_opener_split(a, b, lo, span, bits):
    low = np.uint64((1 << bits) - 1)
    big = a + b
    big -= lo
    return (big & low) - np.uint64(1 << bits), big & ~low, span - big


def ref_check_word(term, bits, common, bound, mask, first):
    """input_check's steps at a pair member (at 530d130, before `check_word` took `common` and `bound`)."""
    low = np.uint64((1 << bits) - 1)
    high = common & ~low if first else np.zeros(common.shape, dtype=np.uint64)
    if len(bound):  # 1 - g
        high = high - bound + (np.uint64(1) if first else np.uint64(0))
    term = high + (term << np.uint64(bits))
    return term + mask if first else term - mask


def ref_check_sum(high, first, second):
    """input_check's W at party 0 and its zero test (at 530d130)."""
    w = high + first + second
    return w, int(np.count_nonzero(w))


@pytest.mark.parametrize("count", [0, 1, 784, 78_400])
def test_the_ring_word_kernels_equal_the_numpy_steps_they_replaced(count):
    """Every shift or width 1..63, both pair members, random words with the ring's edges (0, 1, 2^63 - 1, 2^63,
    2^64 - 1), bits in {0, 1}, a batch of one 784-value example and of 100; the input check's bounds repeated over
    the batch, and its bound part left out where its array is empty."""
    part, big, other_words, pair, delta, mask = (ring_words(count) for _ in range(6))
    beta = RNG.integers(0, 2, size=count, dtype=np.uint64)
    beta[:2] = [0, 1][: min(count, 2)]
    width = min(count, 784)
    lo, span = ring_words(width), ring_words(width)
    repeat = count // width if width else 0
    for bits in range(1, 64):
        offset, low = np.uint64((1 << bits) - 1), np.uint64((1 << bits) - 1)
        out_big, out_other = np.empty(count, np.uint64), np.empty(count, np.uint64)
        kernels.helper_split(part, offset, low, out_big, out_other)
        expected = ref_helper_split(part, offset, low)
        assert np.array_equal(out_big, expected[0]) and np.array_equal(out_other, expected[1]), bits
        out = np.empty(count, np.uint64)
        for flips in (beta, other_words):  # delta, or the pair's coins (bit 0: beta)
            kernels.top_bit_xor(big, np.uint64(bits), flips, out)
            assert np.array_equal(out, ref_top_bit_xor(big, np.uint64(bits), flips)), bits
        carry, high, bound = (np.empty(count, np.uint64) for _ in range(3))
        kernels.opener_split(part, big, lo, span, bits, carry, high, bound)
        expected = ref_opener_split(part.reshape(repeat, width), big.reshape(repeat, width), lo, span, bits)
        for got, want in zip((carry, high, bound), expected, strict=True):
            assert np.array_equal(got, want.reshape(-1)), bits
        kernels.opener_split(part, big, lo, span, bits, carry, high, np.empty(0, np.uint64))
        assert np.array_equal(carry, expected[0].reshape(-1)) and np.array_equal(high, expected[1].reshape(-1))
        for first in (True, False):
            for bound in (delta, np.empty(0, np.uint64)):
                term = other_words.copy()
                kernels.check_word(term, bits, pair, bound, mask, first)
                expected = ref_check_word(other_words, bits, pair, bound, mask, first)
                assert np.array_equal(term, expected), (bits, first, len(bound))
    for zeros in sorted({0, min(count, 1), count}):  # W = 0 nowhere, in one place, everywhere
        want = ring_words(count) | np.uint64(1)  # odd: not 0
        want[:zeros] = 0
        w = high.copy()
        second = want - w - part  # the pair's second word that makes W = want
        assert ref_check_sum(w, part, second)[1] == count - zeros
        assert kernels.check_sum(w, part, second) == count - zeros and np.array_equal(w, want), zeros
    for first in (True, False):
        out = np.empty(count, np.uint64)
        kernels.gate_pair_term(pair, beta, delta, first, out)
        assert np.array_equal(out, ref_gate_pair_term(pair, beta, delta, first)), first


def test_the_references_reductions_and_rotation_are_exact_over_their_whole_domain():
    """The reference's table-free reductions mod p against numpy's remainder for every value they are given, and
    its rotation against np.roll."""
    w = np.arange(-64 * P + 1, 64 * P, dtype=np.int16)
    assert np.array_equal(_mod(w), (w.astype(np.int64) % P).astype(np.uint16))
    x = np.arange(128 * P, dtype=np.uint16)
    assert np.array_equal(_reduce(x), x % P)
    for width in (9, 17, 63):
        rows = RNG.integers(0, 127, size=(500, width)).astype(np.uint8)
        offsets = RNG.integers(0, width, size=500)
        expected = np.stack([np.roll(row, -int(k)) for row, k in zip(rows, offsets, strict=True)])
        assert np.array_equal(_rotate(rows, offsets), expected)


def inputs(bits, n):
    """Random rows, then edge rows: a = 0 and the all-ones number with beta 0 and 1, extreme residues."""
    low = (1 << bits) - 1
    a = RNG.integers(0, low, size=n, dtype=np.uint64, endpoint=True)
    shares = RNG.integers(0, P, size=(n, bits), dtype=np.uint8)
    rho = RNG.integers(0, P - 1, size=(n, bits), dtype=np.uint8)
    mask = RNG.integers(0, P, size=(n, bits), dtype=np.uint8)
    coins = RNG.integers(0, 2**64, size=n, dtype=np.uint64)
    a[:8] = [0, 0, low, low, 0, low, 1, 1]
    shares[:8:2], shares[1:8:2] = 0, P - 1
    rho[:4], rho[4:8] = 0, P - 2
    mask[:3], mask[3:6] = 0, P - 1
    # beta 0, 1, 0, 1, 1, 1, 0, 1 (a = 0 with beta = 1 twice); rotation words 0, 2^63 - 1, R - 1, R, 0, 2^63 - 1,
    # 1, 2^62
    coins[:8] = [0, 2**64 - 1, 2 * (bits - 1), 2 * bits + 1, 1, 2**64 - 1, 2, 2**63 + 1]
    return a, coins, shares, rho, mask


@pytest.mark.parametrize("bits", range(1, 64))
def test_kernels_equal_the_numpy_reference_at_every_width(bits):
    a, coins, shares, rho, mask = inputs(bits, 300)
    # the pair's number with random bits above R: the kernel uses it mod 2^R
    wide = a | (ring_words(len(a)) & ~np.uint64((1 << bits) - 1))
    for first in (True, False):
        expected = ref_pair_vectors(a, coins, shares, rho, mask, first)
        for number in (a, wide):
            out = np.empty_like(shares)
            assert kernels.pair_vectors(number, coins, shares, rho, mask, first, out) == shares.max(), first
            assert np.array_equal(out, expected), first
    for bad in (P, 255):  # the largest share is returned whatever its place, so the caller can refuse it
        spoilt = shares.copy()
        spoilt[len(spoilt) // 2, bits // 2] = bad
        assert kernels.pair_vectors(a, coins, spoilt, rho, mask, True, np.empty_like(shares)) == bad
    other = a ^ np.uint64((1 << bits) - 1)
    message = np.empty_like(shares)
    kernels.helper_message(other, shares, message)
    assert np.array_equal(message, ref_helper_message(other, shares))
    u = RNG.integers(0, P, size=shares.shape, dtype=np.uint8)
    v = (P - u) % P  # a zero in every row
    v[: len(v) // 2] = (v[: len(v) // 2] + RNG.integers(1, P, size=(len(v) // 2, bits))) % P  # then mostly none
    delta = np.empty(len(u), np.uint64)
    kernels.any_zero_sum(u, v, delta)
    assert np.array_equal(delta, ref_any_zero_sum(u, v))
    assert 0 < delta.sum() < len(delta) or bits == 1


def test_kernels_take_the_protocols_read_only_stream_arrays_and_empty_batches():
    """The PRF's words are read-only views of the stream; a batch of no values gives empty outputs."""
    a, coins, shares, rho, mask = inputs(9, 40)
    frozen = [np.frombuffer(x.tobytes(), x.dtype).reshape(x.shape) for x in (coins, shares, rho, mask)]
    out = np.empty_like(shares)
    kernels.pair_vectors(a, *frozen, False, out)
    assert np.array_equal(out, ref_pair_vectors(a, coins, shares, rho, mask, False))
    empty = [x[:0] for x in (a, coins, shares, rho, mask)]
    out = np.empty_like(empty[2])
    assert kernels.pair_vectors(*empty, True, out) == 0
    assert out.shape == (0, 9)


def ref_residues(encryptor, count, modulus):
    """The numpy rejection sampling of `Prf.residues` before the kernel."""
    bits_mask = np.uint8((1 << (modulus - 1).bit_length()) - 1)
    values = np.frombuffer(encryptor.update(bytes(count)), np.uint8) & bits_mask
    redo = np.flatnonzero(values >= modulus)
    while len(redo):
        values[redo] = np.frombuffer(encryptor.update(bytes(len(redo))), np.uint8) & bits_mask
        redo = redo[values[redo] >= modulus]
    return values


@pytest.mark.parametrize("modulus", [2, 3, 126, 127, 129, 255, 256])
def test_prf_residues_equal_the_numpy_rejection_sampling_and_stay_in_step(modulus):
    """The same values from the same stream, draw after draw (the stream position after each draw agrees too:
    the next draw would differ otherwise); sizes 0, 1 and large."""
    key, nonce = bytes(range(16)), bytes(16)
    prf = Prf(key, nonce)
    reference = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    for count in (0, 1, 1000, 200_003, 7):
        assert np.array_equal(prf.residues((count,), modulus), ref_residues(reference, count, modulus))
    assert np.array_equal(prf.words((4,)), np.frombuffer(reference.update(bytes(32)), "<u8"))


def test_redraw_writes_the_masked_fresh_bytes_in_order_and_keeps_the_positions_still_rejected():
    """One pass of the residues' redraws (`kernels.redraw`) against numpy's fancy indexing, for every modulus and
    its mask: redrawn positions in any order (it keeps theirs), none, and every byte value as a fresh byte."""
    for modulus in range(2, 257):
        bits_mask = np.uint8((1 << (modulus - 1).bit_length()) - 1)
        values = RNG.integers(0, 256, size=300, dtype=np.uint8)
        for redo in (RNG.permutation(300)[:256], np.sort(RNG.permutation(300)[:40]), np.zeros(0, np.int64)):
            fresh = np.arange(len(redo), dtype=np.uint8)[::-1].copy()
            expected = values.copy()
            expected[redo] = fresh & bits_mask
            kept = kernels.redraw(values, redo.astype(np.int64), fresh, bits_mask, modulus)
            assert np.array_equal(values, expected), modulus
            assert np.array_equal(kept, redo[expected[redo] >= modulus]), modulus


def test_masked_draws_finds_every_byte_at_or_above_the_modulus_whatever_its_place_in_a_word():
    """The kernel tests eight bytes at a time (a carry per byte): every byte value at every place in a word
    (over the eight starts, arrays that start off an 8-byte boundary, tails of every length), for every modulus
    and its mask, against numpy's mask and flatnonzero. The tails hold a few values only: see the next test."""
    stream = np.concatenate([np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8)[::-1], [255, 128, 127]])
    stream = np.concatenate([np.roll(stream, shift) for shift in range(8)]).astype(np.uint8)  # 4120 bytes
    for modulus in range(2, 257):
        bits_mask = np.uint8((1 << (modulus - 1).bit_length()) - 1)
        for start in range(8):  # tails of 0, 7, 6, ... 1 bytes
            data = stream[start:]
            values = stream.copy()[start:]
            redo = kernels.masked_draws(values, bits_mask, modulus)
            assert np.array_equal(values, data & bits_mask)
            assert np.array_equal(redo, np.flatnonzero((data & bits_mask) >= modulus)), (modulus, start)


def test_masked_draws_tests_every_byte_value_at_every_place_of_every_tail():
    """The bytes after the last whole word are tested one by one: rows of one word and a tail of 1 to 7 bytes,
    row k holding k, k + 1, ... (mod 256), so every byte value sits at every place of every tail and word, for
    every modulus and its mask (the rows start off an 8-byte boundary too); values masked in place, positions
    ascending, against numpy."""
    for modulus in range(2, 257):
        bits_mask = np.uint8((1 << (modulus - 1).bit_length()) - 1)
        for tail in range(1, 8):
            data = ((np.arange(256)[:, None] + np.arange(8 + tail)) % 256).astype(np.uint8)
            values = data.copy()
            redo = [kernels.masked_draws(row, bits_mask, modulus) for row in values]
            rows, places = np.nonzero((data & bits_mask) >= modulus)
            assert np.array_equal(values, data & bits_mask), (modulus, tail)
            assert np.array_equal(np.concatenate(redo), places), (modulus, tail)
            assert np.array_equal([len(r) for r in redo], np.bincount(rows, minlength=256)), (modulus, tail)


def test_masked_draws_promises_no_alignment_for_the_words_it_reads_through_a_view():
    """The kernel reads the bytes as 64-bit words through a view, and its arrays may start anywhere (the test
    above passes them off an 8-byte boundary): its byte array is typed possibly unaligned, so the compiled
    word loads and stores claim no alignment (an ``align 8`` access at an odd address is undefined behaviour
    in LLVM, which x86 happens to forgive); checked on the type and on the vector accesses LLVM makes of it."""
    assert kernels.masked_draws.free.nopython_signatures[0].args[0].aligned is False
    fresh = numba.njit(kernels.masked_draws.free.nopython_signatures)(kernels.masked_draws.free.py_func)
    accesses = re.findall(r"(?:load|store) <\d+ x i64>.*align (\d+)", next(iter(fresh.inspect_llvm().values())))
    assert set(accesses) <= {"1"}, accesses


def test_the_machine_code_cache_is_private_to_the_user_and_numbas_setting_is_left_alone(tmp_path, monkeypatch):
    """The cache directory is created 0700 under XDG_CACHE_HOME; one open to others (whose files could run as
    this user's code) or one that cannot be made is refused (the kernels then compile without a cache); the
    import leaves numba's global cache setting as it found it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _numba.private_cache_dir()
    assert path == str(tmp_path / "ppml" / "numba")
    assert os.stat(path).st_mode & 0o777 == 0o700
    os.chmod(path, 0o777)
    assert _numba.private_cache_dir() is None
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert _numba.private_cache_dir() is None
    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


def test_the_cache_is_refused_under_a_directory_that_others_can_change_and_a_relative_xdg_path_is_ignored(
    tmp_path, monkeypatch
):
    """Someone who can write to a parent could swap the private directory for theirs after the check (their
    pickled index would then run as this user): a parent writable by others, and not sticky, is refused; a
    sticky one (like /tmp) is not. XDG_CACHE_HOME must be absolute (XDG spec), else ~/.cache is used."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    assert _numba.private_cache_dir() is None
    os.chmod(shared, 0o1777)
    assert _numba.private_cache_dir() == str(shared / "ppml" / "numba")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert _numba.private_cache_dir() == str(tmp_path / "home" / ".cache" / "ppml" / "numba")
    assert not (tmp_path / "relative").exists()


def test_kernels_import_without_a_cache_where_the_private_directory_cannot_be_written():
    """A private cache directory this user cannot write (read-only home or mount): numba would refuse to make
    the kernels (RuntimeError: no locator available) and privacy.encrypted would not import; they compile
    uncached instead. Run as nobody where the tests run as root (root writes anywhere)."""
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's temporary directories are closed to other users
    try:
        home = top / "home"
        cache = home / ".cache" / "ppml" / "numba"
        cache.mkdir(parents=True)
        os.chmod(top, 0o755)
        user = {}
        for d in (cache, cache.parent, cache.parent.parent, home):
            if os.getuid() == 0:
                os.chown(d, 65534, 65534)
                user = {"user": 65534, "group": 65534, "extra_groups": []}
            os.chmod(d, 0o500)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(Path(kernels.__file__).parents[3])}
        script = (
            "import os, privacy.encrypted.protocol.kernels as k; "
            f"print(os.access({str(cache)!r}, os.R_OK | os.X_OK), os.access({str(cache)!r}, os.W_OK), "
            "type(k.pair_vectors.free._cache).__name__, type(k.pair_vectors.held._cache).__name__)"
        )
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, **user)
        assert run.returncode == 0, run.stderr[-500:]
        assert run.stdout.split() == [
            "True",
            "False",
            "NullCache",
            "NullCache",
        ]  # it reached the directory, could not write
    finally:
        for d in (home, cache.parent.parent, cache.parent, cache):
            os.chmod(d, 0o700)
        shutil.rmtree(top)


def _fastest_ms(fn, repeats=15):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def test_the_helpers_zero_test_takes_as_long_whether_and_wherever_a_row_has_its_zero():
    """delta (and the zero's position) must not show in the helper's time: with beta, a pair member would read
    the comparison's result from it. A stop at the first zero made rows whose zero comes first ~20x faster than
    rows with none (63 residues); the kernel reads every entry. Fastest of 15 runs, a factor of 3 of slack."""
    u = RNG.integers(0, P, size=(50_000, 63), dtype=np.uint8)
    zero_first = ((P - u.astype(np.int64)) % P).astype(np.uint8)
    no_zero = ((P + 1 - u.astype(np.int64)) % P).astype(np.uint8)
    delta = np.empty(len(u), np.uint64)
    kernels.any_zero_sum(u, zero_first, delta)
    assert delta.all()
    kernels.any_zero_sum(u, no_zero, delta)
    assert not delta.any()
    first = _fastest_ms(lambda: kernels.any_zero_sum(u, zero_first, delta))
    none = _fastest_ms(lambda: kernels.any_zero_sum(u, no_zero, delta))
    assert none < 3 * first and first < 3 * none, (first, none)


def test_importing_privacy_encrypted_compiles_nothing_and_the_start_up_self_test_compiles_the_kernels(
    python_subprocess,
):
    """`ppml report` and the TFX glue import privacy.encrypted without running the protocol: no numba, no
    compile (0.3 s per process with the cache, 1.5 s without). The self-test every process runs before its
    first key (a server: before it serves) compiles them; the protocol then finds them compiled."""
    code = """
import sys
import privacy.encrypted
from privacy.encrypted.protocol import comparison, randomness
assert "numba" not in sys.modules and "privacy.encrypted.protocol.kernels" not in sys.modules
randomness.self_test()
kernels = sys.modules["privacy.encrypted.protocol.kernels"]
assert all(k.free.signatures and k.held.signatures for k in (kernels.pair_vectors, kernels.masked_draws))
print("ok")
"""
    assert python_subprocess(code).stdout.strip().endswith("ok")


_ZERO_SUM_AT_113 = """
import numpy as np
from privacy.encrypted.protocol import modulus
{patch}
from privacy.encrypted.protocol import kernels
out = np.zeros(1, np.uint64)
kernels.any_zero_sum(np.array([[100]], np.uint8), np.array([[13]], np.uint8), out)
print(int(out[0]), sum(kernels.any_zero_sum.held.stats.cache_hits.values()))
"""


def test_a_changed_modulus_is_never_served_from_the_cache_of_the_old_one(python_subprocess, tmp_path):
    """The kernels bake `modulus.MODULUS` into their machine code, and numba checks only kernels.py for changes: a
    process with another modulus (113: 100 + 13 is a zero sum there, not mod 127) computes with its own, and the
    cache still serves an unchanged process."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": ""}

    def zero_sum(patch=""):
        out = python_subprocess(_ZERO_SUM_AT_113.format(patch=patch), env=env).stdout.split()
        return int(out[-2]), int(out[-1])

    assert zero_sum() == (0, 0)
    assert zero_sum("modulus.MODULUS = 113") == (1, 0)
    assert zero_sum() == (0, 1)


TWINS = (
    "helper_message",
    "pair_vectors",
    "any_zero_sum",
    "masked_draws",
    "redraw",
    "helper_split",
    "top_bit_xor",
    "gate_pair_term",
    "opener_split",
    "check_word",
    "check_sum",
)


def _twin_calls(size):
    """Each kernel's arguments with `size` entries in its work array (a multiple of 16: rows of 16 residues), the
    index of its output argument (None: it returns it) and the reference's result."""
    bits = 16
    a, coins, shares, rho, mask = inputs(bits, size // bits)
    other = a ^ np.uint64((1 << bits) - 1)
    u = RNG.integers(0, P, size=shares.shape, dtype=np.uint8)
    v = (P - u) % P
    v[::2] = (v[::2] + 1) % P  # a zero sum in every other row
    stream = RNG.integers(0, 256, size=size, dtype=np.uint8)
    redo = RNG.permutation(size).astype(np.int64)
    fresh = RNG.integers(0, 256, size=size, dtype=np.uint8)
    redrawn = stream.copy()
    redrawn[redo] = fresh & np.uint8(127)
    words, flips, bounds = ring_words(size), ring_words(size), ring_words(size // 16)
    beta = flips & np.uint64(1)
    split = ref_opener_split(words.reshape(16, -1), flips.reshape(16, -1), bounds, bounds, bits)
    empty = np.empty(0, np.uint64)
    return {
        "helper_split": (
            (words, np.uint64(9), np.uint64(7), np.empty_like(words), np.empty_like(words)),
            4,
            ref_helper_split(words, np.uint64(9), np.uint64(7))[1],
        ),
        "top_bit_xor": (
            (words, np.uint64(bits), flips, np.empty_like(words)),
            3,
            ref_top_bit_xor(words, np.uint64(bits), flips),
        ),
        "gate_pair_term": (
            (words, beta, flips, True, np.empty_like(words)),
            4,
            ref_gate_pair_term(words, beta, flips, True),
        ),
        "opener_split": (
            (words, flips, bounds, bounds, bits, np.empty_like(words), np.empty_like(words), empty),
            6,
            split[1].reshape(-1),
        ),
        "check_word": (
            (words, bits, flips, bounds.repeat(16), words, True),
            0,
            ref_check_word(words, bits, flips, bounds.repeat(16), words, True),
        ),
        "check_sum": ((words.copy(), flips, bounds.repeat(16)), 0, ref_check_sum(words, flips, bounds.repeat(16))[0]),
        "helper_message": ((other, shares, np.empty_like(shares)), 2, ref_helper_message(other, shares)),
        "pair_vectors": (
            (a, coins, shares, rho, mask, True, np.empty_like(shares)),
            6,
            ref_pair_vectors(a, coins, shares, rho, mask, True),
        ),
        "any_zero_sum": ((u, v, np.empty(len(u), np.uint64)), 2, ref_any_zero_sum(u, v)),
        "masked_draws": ((stream.copy(), np.uint8(127), 127), None, np.flatnonzero((stream & np.uint8(127)) >= 127)),
        "redraw": ((stream.copy(), redo, fresh, np.uint8(127), 127), None, redo[redrawn[redo] >= 127]),
    }


def test_kernels_keep_the_gil_below_their_size_and_release_it_from_there_with_the_same_results(monkeypatch):
    """Each kernel runs its twin compiled to keep the GIL where its work array has fewer than `KEEP_GIL_BELOW`
    entries and the twin that releases it from there (numba's nogil); at the sizes either side of that boundary
    (rows of 16 residues) the kernel and both twins give the numpy reference's result."""
    ran = []
    for name in TWINS:
        kernel = getattr(kernels, name)
        assert (kernel.free.targetoptions["nogil"], kernel.held.targetoptions["nogil"]) == (True, False), name
        for twin in ("free", "held"):
            real = getattr(kernel, twin)
            monkeypatch.setattr(kernel, twin, lambda *args, real=real, twin=twin: ran.append(twin) or real(*args))
    for size, twin in ((kernels.KEEP_GIL_BELOW - 16, "held"), (kernels.KEEP_GIL_BELOW, "free")):
        for name, (args, out, expected) in _twin_calls(size).items():
            kernel = getattr(kernels, name)
            for call, runs in ((kernel, twin), (kernel.held, "held"), (kernel.free, "free")):
                fresh = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
                ran.clear()
                result = call(*fresh)
                assert np.array_equal(result if out is None else fresh[out], expected), (name, size, runs)
                assert ran == [runs], (name, size)


_GIL_PROBE = """
import threading
import numpy as np
from privacy.encrypted.protocol import kernels

shares = np.zeros((1 << 21, 16), np.uint8)  # a call of ~20-100 ms
other = np.zeros(len(shares), np.uint64)


def seen_half_written(twin):
    # whether this thread ran Python while another ran the twin: it saw the output written in its first row and not
    # yet in its last (the kernel writes row by row; 255 is no residue). No timing: where the twin keeps the GIL,
    # this thread only runs before the call or after it, however the threads are scheduled
    out = np.full_like(shares, 255)
    thread, seen = threading.Thread(target=twin, args=(other, shares, out)), False
    thread.start()
    while thread.is_alive():
        seen = seen or bool(out[0, 0] != 255 and out[-1, -1] == 255)
    thread.join()
    assert (out == 0).all()  # it ran: c' = 0 and shares 0 give 0 everywhere
    return seen


held, free = kernels.helper_message.held, kernels.helper_message.free
print(seen_half_written(held), any(seen_half_written(free) for _ in range(5)))
"""


def test_the_twin_that_keeps_the_gil_keeps_it_and_the_other_releases_it_when_both_come_from_the_cache(
    python_subprocess, tmp_path
):
    """numba's cache tells code apart by signature and bytecode, not by nogil: the twins are cached apart, so a
    process that loads them from the cache (the second here) gets each its own. Seen from another thread: it runs
    no Python while the twin that keeps the GIL runs, and does while the other one runs."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": ""}
    for _ in range(2):
        assert python_subprocess(_GIL_PROBE, env=env).stdout.split()[-2:] == ["False", "True"]
