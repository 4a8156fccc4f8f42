// A picture from the chat, enlarged over the window; a click closes it.
import QtQuick 2.15
import QtQuick.Controls 2.15

Popup {
    id: popup
    property string source: ""
    function show(url) { source = url; open() }

    parent: Overlay.overlay
    x: 0; y: 0
    width: parent ? parent.width : 800
    height: parent ? parent.height : 600
    modal: true
    padding: 24
    background: Rectangle { color: "#E6000000" }

    Image {
        anchors.fill: parent
        source: popup.source
        fillMode: Image.PreserveAspectFit
        asynchronous: true
    }
    MouseArea { anchors.fill: parent; onClicked: popup.close() }
}
