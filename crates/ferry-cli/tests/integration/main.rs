//! Integration tests: a real `ferry serve` on loopback, driven by the clients
//! people use (Python ftplib and urllib, curl, lftp) and by raw sockets for input
//! no client would send.

mod accounts;
mod activity;
mod bans;
mod client;
mod clients;
mod ftps;
mod hostile;
mod lifecycle;
mod limits;
mod object_storage;
mod peers;
mod sftp;
mod sftp_client;
mod support;
mod url;
mod web;
