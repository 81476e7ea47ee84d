use std::collections::{BTreeSet, HashMap, VecDeque};

use prost::Message;
use prost_types::FileDescriptorProto;
use tailor_e2e::Stack;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

/// One request/answer on the v1 reflection stream.
async fn ask_v1(
    client: &mut v1::server_reflection_client::ServerReflectionClient<Channel>,
    request: v1::server_reflection_request::MessageRequest,
) -> v1::server_reflection_response::MessageResponse {
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

fn files(answer: v1::server_reflection_response::MessageResponse) -> Vec<FileDescriptorProto> {
    match answer {
        v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect(),
        other => panic!("expected descriptors, got {other:?}"),
    }
}

/// What grpcurl does for `list`, `describe` and `-d` calls: list the
/// services, fetch the file defining one, then fetch every import by name
/// until the whole dependency graph is resolved.
async fn walk(channel: Channel, served: &[&str]) {
    let expected_service = served[0];
    use v1::server_reflection_request::MessageRequest;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());

    let services = match ask_v1(&mut client, MessageRequest::ListServices(String::new())).await {
        v1::server_reflection_response::MessageResponse::ListServicesResponse(list) => list
            .service
            .into_iter()
            .map(|s| s.name)
            .collect::<BTreeSet<_>>(),
        other => panic!("expected a service list, got {other:?}"),
    };
    let expected: BTreeSet<String> = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .into_iter()
    .chain(served.iter().copied())
    .map(str::to_owned)
    .collect();
    assert_eq!(
        services, expected,
        "a BFF advertises exactly what it serves"
    );

    let mut known: HashMap<String, FileDescriptorProto> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for service in &services {
        for file in files(
            ask_v1(
                &mut client,
                MessageRequest::FileContainingSymbol(service.clone()),
            )
            .await,
        ) {
            queue.extend(file.dependency.iter().cloned());
            known.insert(file.name().to_owned(), file);
        }
    }
    while let Some(name) = queue.pop_front() {
        if known.contains_key(&name) {
            continue;
        }
        let fetched =
            files(ask_v1(&mut client, MessageRequest::FileByFilename(name.clone())).await);
        assert!(
            fetched.iter().any(|f| f.name() == name),
            "{name} resolvable by name"
        );
        for file in fetched {
            queue.extend(file.dependency.iter().cloned());
            known.insert(file.name().to_owned(), file);
        }
    }
    for file in known.values() {
        for dependency in &file.dependency {
            assert!(
                known.contains_key(dependency),
                "{} imports unresolvable {dependency}",
                file.name()
            );
        }
    }
    let (package, name) = expected_service.rsplit_once('.').unwrap();
    let defining = known
        .values()
        .find(|f| f.package() == package && f.service.iter().any(|s| s.name() == name))
        .expect("the service's file");
    assert!(!defining.service[0].method.is_empty());
    assert!(known.contains_key("google/protobuf/timestamp.proto") || package == "tailor.mobile.v1");

    // The older protocol answers too.
    use v1alpha::server_reflection_request::MessageRequest as Alpha;
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(Alpha::FileContainingSymbol(expected_service.to_owned())),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        answer.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test]
async fn every_bff_can_be_explored_and_called_through_reflection_alone() {
    let stack = Stack::start().await;
    walk(
        stack.web.channel().await,
        &["tailor.web.v1.ShopService", "tailor.web.v1.SessionService"],
    )
    .await;
    walk(
        stack.mobile.channel().await,
        &["tailor.mobile.v1.ShopService"],
    )
    .await;
    walk(
        stack.partner.channel().await,
        &["tailor.partner.v1.PartnerService"],
    )
    .await;
    walk(
        stack.catalog.channel().await,
        &["tailor.catalog.v1.CatalogService"],
    )
    .await;
}

/// Whether a reflection request is refused as unknown, as an error message
/// on the stream or as the stream's status.
async fn refused_as_unknown(
    client: &mut v1::server_reflection_client::ServerReflectionClient<Channel>,
    request: v1::server_reflection_request::MessageRequest,
) -> bool {
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let answer = match client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
    {
        Ok(answers) => answers.into_inner().message().await,
        Err(status) => Err(status),
    };
    match answer {
        Err(status) => status.code() == tonic::Code::NotFound,
        Ok(Some(answer)) => matches!(
            answer.message_response,
            Some(v1::server_reflection_response::MessageResponse::ErrorResponse(ref e))
                if e.error_code == tonic::Code::NotFound as i32
        ),
        Ok(None) => false,
    }
}

#[tokio::test]
async fn each_server_describes_its_own_contracts_and_not_the_ones_behind_it() {
    use v1::server_reflection_request::MessageRequest;
    let stack = Stack::start().await;
    let cases = [
        (
            &stack.web,
            "tailor.web.v1.ShopService",
            "tailor.catalog.v1.CatalogService",
            "tailor/catalog/v1/catalog.proto",
        ),
        (
            &stack.mobile,
            "tailor.mobile.v1.ShopService",
            "tailor.orders.v1.OrdersService",
            "tailor/orders/v1/orders.proto",
        ),
        (
            &stack.partner,
            "tailor.partner.v1.PartnerService",
            "tailor.inventory.v1.InventoryService",
            "tailor/inventory/v1/inventory.proto",
        ),
        (
            &stack.catalog,
            "tailor.catalog.v1.CatalogService",
            "tailor.web.v1.ShopService",
            "tailor/web/v1/shop.proto",
        ),
    ];
    for (server, own, foreign, file) in cases {
        let mut client =
            v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
        let answer = ask_v1(
            &mut client,
            MessageRequest::FileContainingSymbol(own.into()),
        )
        .await;
        assert!(!files(answer).is_empty(), "{own}");
        assert!(
            refused_as_unknown(
                &mut client,
                MessageRequest::FileContainingSymbol(foreign.into())
            )
            .await,
            "{own}'s server describes {foreign}"
        );
        assert!(
            refused_as_unknown(&mut client, MessageRequest::FileByFilename(file.into())).await,
            "{own}'s server hands out {file}"
        );
    }
}
