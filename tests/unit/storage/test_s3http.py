"""The S3 client's answer parsing (pure) and its endpoint handling (no request sent)."""

from __future__ import annotations

import pytest
from communs.storage.s3http import S3Answer, S3Http, parse_error, parse_listing

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def test_error_answers_give_code_and_message() -> None:
    body = b"<?xml version='1.0'?><Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>"
    assert parse_error(body, 404) == ("NoSuchBucket", "The bucket does not exist")
    assert parse_error(b"", 403) == ("403", "")  # HEAD answers have no body
    assert parse_error(b"<html>bad gateway</html", 502) == ("502", "<html>bad gateway</html")


def test_listing_pages_and_the_last_one() -> None:
    page = parse_listing(f"""<ListBucketResult {NS}><Name>b</Name><Prefix>p/</Prefix>
        <Contents><Key>p/one</Key><Size>12</Size></Contents><Contents><Key>p/two</Key><Size>0</Size></Contents>
        <IsTruncated>true</IsTruncated><NextContinuationToken>tok/en==</NextContinuationToken>
        </ListBucketResult>""".encode())
    assert page.objects == [("p/one", 12), ("p/two", 0)] and page.next_token == "tok/en=="
    last = parse_listing(f"<ListBucketResult {NS}><IsTruncated>false</IsTruncated></ListBucketResult>".encode())
    assert last.objects == [] and last.next_token is None
    with pytest.raises(S3Answer, match="not XML"):
        parse_listing(b"<ListBucketResult>")


def test_the_host_header_leaves_out_a_default_port() -> None:
    c = S3Http("http://127.0.0.1:80/", "b", "k", "s", "us-east-1")
    try:
        assert c._host == "127.0.0.1" and c.path_of("p/x") == "/b/p/x"
        assert c.copy_source("p/a b") == "/b/p/a%20b"
    finally:
        c.close()
    c = S3Http("https://s3.example.org:9000/base", "b", "k", "s", "us-east-1")
    try:
        assert c._host == "s3.example.org:9000" and c.path_of("x") == "/base/b/x" and c.path_of("") == "/base/b"
    finally:
        c.close()
    with pytest.raises(ValueError, match="not an http"):
        S3Http("ftp://x", "b", "k", "s", "us-east-1")
